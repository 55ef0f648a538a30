// Every queue with its counts by state, whether it is paused, and (when this
// tqd reports them) its limits in short.
import { count } from "../format";
import { limitsOf, limitsSummary, limitText, rateText } from "../limits";
import { href } from "../router";
import { STATES, type Queue } from "../types";

export function QueueTable({ queues }: { queues: Queue[] }) {
  if (!queues.length) return <p class="muted">No queues yet.</p>;
  // An older tqd reports no limits: then no column for them.
  const showLimits = queues.some((q) => limitsOf(q) !== null);
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
            {showLimits && <th>Limits</th>}
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
              {showLimits && <LimitsCell queue={q} />}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function LimitsCell({ queue }: { queue: Queue }) {
  const l = limitsOf(queue);
  const title = l
    ? `concurrency ${limitText(l.concurrency)}; rate ${rateText(l)}; group concurrency ${limitText(l.group_concurrency)}`
    : "";
  return (
    <td class="clip muted" data-limits title={title}>
      {limitsSummary(l)}
    </td>
  );
}
