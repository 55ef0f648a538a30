// Every queue with its counts by state and whether it is paused.
import { count } from "../format";
import { href } from "../router";
import { STATES, type Queue } from "../types";

export function QueueTable({ queues }: { queues: Queue[] }) {
  if (!queues.length) return <p class="muted">No queues yet.</p>;
  return (
    <div class="table-wrap">
      <table class="data" data-testid="queue-table">
        <thead>
          <tr>
            <th>Queue</th>
            <th>Status</th>
            {STATES.map((s) => (
              <th key={s} class="num">
                {s}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {queues.map((q) => (
            <tr key={q.name} data-queue={q.name}>
              <td>
                <a href={href.queue(q.name)}>{q.name}</a>
              </td>
              <td>{q.paused ? <span class="badge paused">paused</span> : <span class="badge running">running</span>}</td>
              {STATES.map((s) => (
                <td key={s} class="num" data-state={s}>
                  <a href={s === "failed" ? href.dead({ queue: q.name }) : href.tasks({ queue: q.name, state: s })}>
                    {count(q.counts?.[s] ?? 0)}
                  </a>
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
