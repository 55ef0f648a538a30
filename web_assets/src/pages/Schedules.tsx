// Schedules: each cron schedule with its last and next firing; trigger now.
// Until the API serves GET /v1/schedules (404), the page says none are configured.
import { act } from "../actions";
import { api } from "../api";
import { ErrorBox, Loading, Section } from "../components/ui";
import { ago, localTime } from "../format";
import { useInterval, useLoad, useNow } from "../hooks";
import { useLiveQueues } from "../live";
import { href } from "../router";
import type { Schedule } from "../types";

/** The first string field among `keys` (the API's names may vary). */
function pick(s: Schedule, keys: string[]): string | null {
  for (const k of keys) {
    const v = s[k];
    if (typeof v === "string" && v) return v;
  }
  return null;
}

const LAST = ["last_fired_at", "last_run_at", "last_fire", "last_at", "last"];
const NEXT = ["next_fire_at", "next_run_at", "next_fire", "next_at", "next"];

/** The id of the task a trigger enqueued, from {"task": {...}}, {"id": ...} or {"task_id": ...}. */
function triggeredId(r: unknown): string | null {
  if (!r || typeof r !== "object") return null;
  const o = r as Record<string, unknown>;
  const task = o.task as Record<string, unknown> | undefined;
  const id = (task && task.id) ?? o.task_id ?? o.id;
  return typeof id === "string" ? id : null;
}

export function Schedules() {
  useLiveQueues([]);
  const schedules = useLoad(() => api.schedules(), []);
  useInterval(schedules.reload, 10000);
  const now = useNow();

  async function trigger(name: string) {
    const r = await act(`Trigger ${name}`, () => api.trigger(name), {
      title: `Fire ${name} now?`,
      body: `Schedule ${name} enqueues its task once now, besides its regular firings.`,
      confirmLabel: "Trigger",
      danger: false,
    }, (res) => {
      const id = triggeredId(res);
      return id ? `${name} fired: task ${id}` : `${name} fired`;
    });
    if (r !== undefined) schedules.reload();
  }

  let body;
  if (schedules.status === 404) body = <p class="muted">No schedules configured.</p>;
  else if (schedules.error && !schedules.data) body = <ErrorBox error={schedules.error} />;
  else if (!schedules.data) body = <Loading />;
  else if (!schedules.data.length) body = <p class="muted">No schedules configured.</p>;
  else
    body = (
      <div class="table-wrap">
        <table class="data" data-testid="schedule-table">
          <thead>
            <tr>
              <th>Schedule</th>
              <th>When</th>
              <th>Task</th>
              <th>Queue</th>
              <th>Last firing</th>
              <th>Next firing</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {schedules.data.map((s) => {
              const last = pick(s, LAST);
              const next = pick(s, NEXT);
              const cron = [s.cron, s.timezone].filter((x) => typeof x === "string" && x).join(" ");
              const task = typeof s.task === "string" ? s.task : "";
              const queue = typeof s.queue === "string" ? s.queue : "";
              return (
                <tr key={s.name}>
                  <td>{s.name}</td>
                  <td class="mono">{cron}</td>
                  <td>{task}</td>
                  <td>{queue ? <a href={href.queue(queue)}>{queue}</a> : ""}</td>
                  <td title={last ?? ""}>{last ? `${localTime(last)} (${ago(last, now)})` : "never"}</td>
                  <td title={next ?? ""}>{next ? `${localTime(next)} (${ago(next, now)})` : "—"}</td>
                  <td>
                    <button type="button" onClick={() => trigger(s.name)}>
                      Trigger now
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    );
  return (
    <div class="page">
      <h1>Schedules</h1>
      <Section title="Cron schedules">{body}</Section>
    </div>
  );
}
