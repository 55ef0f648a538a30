// The tqd processes sharing the store, with heartbeat age and running tasks.
import { useState } from "preact/hooks";
import { api } from "../api";
import { ago, count, duration, parseTime } from "../format";
import { useInterval, useLoad, useNow } from "../hooks";
import { useResync } from "../live";
import { href } from "../router";
import type { Worker } from "../types";
import { ErrorBox, Loading } from "./ui";

/** Processes refresh every 5 s: the stream carries no heartbeat events. */
export function useWorkers() {
  const workers = useLoad(() => api.workers(), []);
  useInterval(workers.reload, 5000);
  useResync(workers.reload, []);
  return workers;
}

const SHOWN_RUNNING = 20;

function RunningTasks({ ids }: { ids: string[] }) {
  const [all, setAll] = useState(false);
  if (!ids.length) return <span class="muted">idle</span>;
  const shown = all ? ids : ids.slice(0, SHOWN_RUNNING);
  return (
    <div class="running-list">
      {shown.map((id) => (
        <a key={id} class="mono" href={href.task(id)}>
          {id}
        </a>
      ))}
      {!all && ids.length > SHOWN_RUNNING && (
        <button type="button" class="link" onClick={() => setAll(true)}>
          {`and ${ids.length - SHOWN_RUNNING} more`}
        </button>
      )}
    </div>
  );
}

export function WorkerTable({ detailed }: { detailed: boolean }) {
  const workers = useWorkers();
  const now = useNow();
  if (workers.error && !workers.data) return <ErrorBox error={workers.error} />;
  if (!workers.data) return <Loading />;
  const list: Worker[] = workers.data;
  if (!list.length) return <p class="muted">No live processes (workers disabled on every instance?).</p>;
  return (
    <div class="table-wrap">
      <table class="data" data-testid="worker-table">
        <thead>
          <tr>
            <th>Process</th>
            <th>Host</th>
            <th class="num">PID</th>
            <th>Version</th>
            <th>Up</th>
            <th>Heartbeat</th>
            <th class="num">Running</th>
            {detailed && <th>Running tasks</th>}
          </tr>
        </thead>
        <tbody>
          {list.map((w) => {
            const started = parseTime(w.started_at);
            return (
              <tr key={w.id}>
                <td class="mono">{w.id}</td>
                <td>{w.host}</td>
                <td class="num">{w.pid}</td>
                <td>{w.version}</td>
                <td>{started === null ? "—" : duration(now - started)}</td>
                <td>{ago(w.last_heartbeat, now)}</td>
                <td class="num">{`${count(w.running.length)} / ${count(w.concurrency)}`}</td>
                {detailed && (
                  <td>
                    <RunningTasks ids={w.running} />
                  </td>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
