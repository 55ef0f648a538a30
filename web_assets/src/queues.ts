// The queue list shared by every page: fetched once, then kept current by
// the event stream's "queues" messages (and refetched after a reconnect).
import { useEffect, useState } from "preact/hooks";
import { describe } from "./actions";
import { api } from "./api";
import { live, queuesSignal, useOfflinePoll } from "./live";
import { useSignal } from "./signal";
import type { Queue } from "./types";

let inflight: Promise<void> | null = null;

/** Fetch the queue list now (one request at a time). */
export function refreshQueues(): Promise<void> {
  if (!inflight) {
    inflight = api
      .queues()
      .then((qs) => {
        queuesSignal.value = qs;
      })
      .finally(() => {
        inflight = null;
      });
  }
  return inflight;
}

// Only a list that was fetched needs fetching again: pages that show queues
// fetch them when they open (a task page, for one, does not need them).
live.onResync(() => {
  if (queuesSignal.value !== null) refreshQueues().catch(() => undefined);
});

/** Replace one queue in the shared list after an action answered with it. */
export function updateQueue(q: Queue): void {
  const list = queuesSignal.value;
  if (!list) return;
  const { name, paused, counts } = q;
  queuesSignal.value = list.map((x) => (x.name === name ? { ...x, ...q, name, paused, counts } : x));
}

function pollQueues(): void {
  refreshQueues().catch(() => undefined);
}

/** The queues with their counts, and the error of the last fetch. */
export function useQueues(): { queues: Queue[] | null; error: string | null } {
  const queues = useSignal(queuesSignal);
  const [error, setError] = useState<string | null>(null);
  useOfflinePoll(pollQueues, 5000);
  useEffect(() => {
    refreshQueues().then(
      () => setError(null),
      (err) => setError(describe(err)),
    );
  }, []);
  return { queues, error };
}
