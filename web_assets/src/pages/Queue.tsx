// Queue: counts, limits (where the API has them), pause/resume, purge by
// state, redrive the dead letters, and this queue's charts.
import { useEffect, useState } from "preact/hooks";
import { act } from "../actions";
import { api } from "../api";
import { StatsCharts } from "../components/StatsCharts";
import { ErrorBox, Loading, Section } from "../components/ui";
import { count, pretty } from "../format";
import { useLoad } from "../hooks";
import { queuesSignal, useLiveQueues, useOfflinePoll, useResync } from "../live";
import { refreshQueues, updateQueue } from "../queues";
import { href } from "../router";
import { useSignal } from "../signal";
import { STATES, type Queue as QueueT } from "../types";

const PURGEABLE = STATES.filter((s) => s !== "processing");

export function Queue({ name }: { name: string }) {
  useLiveQueues([]);
  const fetched = useLoad(() => api.queue(name), [name]);
  useResync(fetched.reload, [name]);
  useOfflinePoll(fetched.reload, 5000);
  // A fresh answer also refreshes the shared list, which the page shows.
  useEffect(() => {
    if (fetched.data) updateQueue(fetched.data);
  }, [fetched.data]);
  const list = useSignal(queuesSignal);
  const liveQ = list?.find((q) => q.name === name);
  // The single-queue answer may carry more (limits); live counts are fresher.
  const queue: QueueT | undefined = fetched.data ? { ...fetched.data, ...(liveQ ?? {}) } : liveQ;

  if (!queue) {
    return (
      <div class="page">
        <h1>{`Queue ${name}`}</h1>
        {fetched.error ? <ErrorBox error={fetched.error} /> : <Loading />}
      </div>
    );
  }
  const onChange = (q: QueueT) => {
    updateQueue(q);
    fetched.reload();
  };
  return <QueueView queue={queue} error={fetched.error} onChange={onChange} />;
}

interface ViewProps {
  queue: QueueT;
  /** Why the last fetch of this queue failed (the list still had it). */
  error: string | null;
  onChange: (q: QueueT) => void;
}

function QueueView({ queue, error, onChange }: ViewProps) {
  const [purgeState, setPurgeState] = useState<string>("completed");
  const failed = queue.counts?.failed ?? 0;
  const name = queue.name;

  async function togglePause() {
    const q = await act(
      queue.paused ? `Resume ${name}` : `Pause ${name}`,
      () => (queue.paused ? api.resume(name) : api.pause(name)),
      undefined,
      (r) => `${r.name} is ${r.paused ? "paused" : "running"}`,
    );
    if (q) onChange(q);
  }
  async function redrive() {
    const q = await act(
      `Redrive ${name}`,
      () => api.redrive(name),
      {
        title: "Redrive the dead letters?",
        body: `Every failed task of queue ${name} (${count(failed)} now) goes back to pending and runs again.`,
        confirmLabel: "Redrive",
        danger: false,
      },
      (r) => `${count(r.affected)} task${r.affected === 1 ? "" : "s"} back to pending`,
    );
    if (q) onChange(q);
  }
  async function purge() {
    const n = queue.counts?.[purgeState] ?? 0;
    const q = await act(
      `Purge ${name}`,
      () => api.purge(name, purgeState),
      {
        title: `Delete every ${purgeState} task of ${name}?`,
        body: `${count(n)} ${purgeState} task${n === 1 ? "" : "s"} of queue ${name} will be deleted for good.`,
        confirmLabel: "Purge",
      },
      (r) => `${count(r.affected)} task${r.affected === 1 ? "" : "s"} deleted`,
    );
    if (q) {
      onChange(q);
      refreshQueues().catch(() => undefined);
    }
  }

  return (
    <div class="page">
      <div class="page-head">
        <h1>
          {"Queue "}
          <span class="name">{name}</span>
        </h1>
        {queue.paused ? <span class="badge paused">paused</span> : <span class="badge running">running</span>}
        <button type="button" class={queue.paused ? "primary" : ""} onClick={togglePause} data-testid="pause-toggle">
          {queue.paused ? "Resume" : "Pause"}
        </button>
      </div>
      {error && <ErrorBox error={error} />}
      <div class="tiles">
        {STATES.map((s) => (
          <a key={s} class={`tile state-${s}`} data-state={s} href={s === "failed" ? href.dead({ queue: name }) : href.tasks({ queue: name, state: s })}>
            <div class="tile-label">{s}</div>
            <div class="tile-value">{count(queue.counts?.[s] ?? 0)}</div>
          </a>
        ))}
      </div>
      <Section title="Actions">
        <div class="action-row">
          <button type="button" disabled={!failed} onClick={redrive}>
            {`Redrive ${count(failed)} dead letter${failed === 1 ? "" : "s"}`}
          </button>
          <span class="spacer" />
          <label>
            {"Purge tasks in state "}
            <select value={purgeState} onChange={(e) => setPurgeState((e.target as HTMLSelectElement).value)}>
              {PURGEABLE.map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <button type="button" class="danger" onClick={purge}>
            Purge…
          </button>
          <a href={href.tasks({ queue: name })}>Browse its tasks</a>
        </div>
      </Section>
      <Limits queue={queue} onChange={onChange} />
      <StatsCharts queue={name} />
    </div>
  );
}

/**
 * Concurrency and rate limits: shown, and editable, only when the API
 * reports them for the queue (PATCH /v1/queues/{q} comes with them).
 */
function Limits({ queue, onChange }: { queue: QueueT; onChange: (q: QueueT) => void }) {
  const has = "concurrency" in queue || "rate_limit" in queue;
  const [concurrency, setConcurrency] = useState(queue.concurrency == null ? "" : String(queue.concurrency));
  const [rate, setRate] = useState(queue.rate_limit == null ? "" : pretty(queue.rate_limit));
  const [problem, setProblem] = useState<string | null>(null);
  if (!has) return null;
  async function save(e: Event) {
    e.preventDefault();
    const body: Record<string, unknown> = {};
    if ("concurrency" in queue) {
      const c = concurrency.trim();
      if (c && !/^[1-9][0-9]*$/.test(c)) {
        setProblem("concurrency: a whole number of at least 1, or empty for no limit");
        return;
      }
      body.concurrency = c ? Number(c) : null;
    }
    if ("rate_limit" in queue) {
      try {
        body.rate_limit = rate.trim() ? JSON.parse(rate) : null;
      } catch {
        setProblem("rate limit: not valid JSON");
        return;
      }
    }
    setProblem(null);
    const q = await act(`Limits of ${queue.name}`, () => api.setLimits(queue.name, body), undefined, () => "limits saved");
    if (q) onChange(q);
  }
  return (
    <Section title="Limits">
      <form class="limits" onSubmit={save}>
        {"concurrency" in queue && (
          <label>
            {"Concurrency (across all processes; empty: no limit) "}
            <input inputMode="numeric" value={concurrency} onInput={(e) => setConcurrency((e.target as HTMLInputElement).value)} />
          </label>
        )}
        {"rate_limit" in queue && (
          <label>
            {"Rate limit (JSON, as the API takes it; empty: none) "}
            <textarea rows={3} value={rate} onInput={(e) => setRate((e.target as HTMLTextAreaElement).value)} />
          </label>
        )}
        {problem && <ErrorBox error={problem} />}
        <button type="submit" class="primary">
          Save limits
        </button>
      </form>
    </Section>
  );
}
