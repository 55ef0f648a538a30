// A cursor-paged list of tasks with selection and bulk retry, cancel, delete.
// Used by the Tasks page and the Dead letters page. Live: rows on screen take
// each state change from the event stream; the newest page refetches (at most
// once a second) when a matching task appears.
import { useEffect, useState } from "preact/hooks";
import { act, ask, eachId, notify } from "../actions";
import { api, type TaskFilter } from "../api";
import { ago, clip, count } from "../format";
import { useLoad, useNow, useThrottle } from "../hooks";
import { useLiveQueues, useOfflinePoll, useResync, useTaskEvents } from "../live";
import { href, navigate } from "../router";
import type { Task } from "../types";
import { ErrorBox, Loading, StateBadge } from "./ui";

interface Props {
  filter: TaskFilter;
  /** The URL of this list at another cursor (undefined: the newest page). */
  pageHref: (cursor: string | undefined) => string;
  empty: string;
}

type Bulk = "retry" | "cancel" | "delete";

const BULK: Record<Bulk, { label: string; verb: string; run: (id: string) => Promise<unknown>; danger: boolean }> = {
  retry: { label: "Retry", verb: "retried", run: api.retry, danger: false },
  cancel: { label: "Cancel", verb: "cancelled", run: api.cancel, danger: true },
  delete: { label: "Delete", verb: "deleted", run: api.remove, danger: true },
};

export function TaskTable({ filter, pageHref, empty }: Props) {
  const { state, queue, name, cursor } = filter;
  const page = useLoad(() => api.tasks({ state, queue, name, cursor, limit: 50 }), [state, queue, name, cursor]);
  const [rows, setRows] = useState<Task[] | null>(null);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [busy, setBusy] = useState(false);
  const now = useNow(5000);

  useEffect(() => {
    if (page.data) setRows(page.data.tasks);
  }, [page.data]);
  useEffect(() => {
    setRows(null);
    setSelected(new Set());
  }, [state, queue, name, cursor]);

  useLiveQueues(queue ? [queue] : null);
  const refetch = useThrottle(page.reload, 1000);
  useResync(refetch, [refetch]);
  useOfflinePoll(refetch, 5000);
  useTaskEvents(
    (e) => {
      setRows((current) => {
        if (!current) return current;
        let hit = false;
        const next = current.map((t) => {
          if (t.id !== e.id) return t;
          hit = true;
          return { ...t, state: e.state };
        });
        return hit ? next : current;
      });
      const matches = (!queue || e.queue === queue) && (!name || e.name === name) && (!state || e.state === state);
      if (!cursor && matches) refetch();
    },
    [queue, name, state, cursor, refetch],
  );

  if (page.error && !rows) return <ErrorBox error={page.error} />;
  if (!rows) return <Loading />;

  const ids = rows.map((t) => t.id);
  const allOn = ids.length > 0 && ids.every((id) => selected.has(id));
  function toggle(id: string) {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  }
  async function bulk(kind: Bulk) {
    const spec = BULK[kind];
    const chosen = ids.filter((id) => selected.has(id));
    if (!chosen.length) return;
    if (spec.danger) {
      const ok = await ask(
        `${spec.label} ${chosen.length} task${chosen.length === 1 ? "" : "s"}?`,
        kind === "delete"
          ? "Deleted tasks are gone for good, with their payloads and results."
          : "Cancelled tasks will not run; a running one is stopped.",
        `${spec.label} ${chosen.length === 1 ? "task" : "tasks"}`,
      );
      if (!ok) return;
    }
    setBusy(true);
    const { ok, failed } = await eachId(chosen, spec.run);
    setBusy(false);
    if (ok) notify("ok", `${spec.verb} ${ok} task${ok === 1 ? "" : "s"}`);
    for (const [id, message] of failed.slice(0, 3)) notify("error", `${spec.label} ${id}: ${message}`);
    if (failed.length > 3) notify("error", `${spec.label}: ${failed.length - 3} more failed`);
    setSelected(new Set(failed.map(([id]) => id)));
    page.reload();
  }
  const nSel = ids.filter((id) => selected.has(id)).length;
  // An older tqd sends no "group": then no column for it.
  const showGroup = rows.some((t) => "group" in t);

  return (
    <div>
      <div class="toolbar">
        <span class="muted">{nSel ? `${nSel} selected` : "Select tasks to act on several at once."}</span>
        {(Object.keys(BULK) as Bulk[]).map((k) => (
          <button type="button" key={k} class={BULK[k].danger ? "danger" : ""} disabled={!nSel || busy} onClick={() => bulk(k)}>
            {`${BULK[k].label} selected`}
          </button>
        ))}
      </div>
      {rows.length === 0 ? (
        <p class="muted">{empty}</p>
      ) : (
        <div class="table-wrap">
          <table class="data" data-testid="task-table">
            <thead>
              <tr>
                <th class="check">
                  <input
                    type="checkbox"
                    aria-label="Select all on this page"
                    checked={allOn}
                    onChange={() => setSelected(allOn ? new Set() : new Set(ids))}
                  />
                </th>
                <th>ID</th>
                <th>Name</th>
                <th>Queue</th>
                {showGroup && <th>Group</th>}
                <th>State</th>
                <th class="num">Attempts</th>
                <th>Created</th>
                <th>Last error</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((t) => (
                <tr key={t.id} data-task-id={t.id}>
                  <td class="check">
                    <input type="checkbox" aria-label={`Select ${t.id}`} checked={selected.has(t.id)} onChange={() => toggle(t.id)} />
                  </td>
                  <td class="mono">
                    <a href={href.task(t.id)}>{t.id}</a>
                  </td>
                  <td class="clip" title={t.name}>
                    {t.name}
                  </td>
                  <td class="clip" title={t.queue}>
                    <a href={href.queue(t.queue)}>{t.queue}</a>
                  </td>
                  {showGroup && (
                    <td class="clip" title={t.group ?? ""} data-group>
                      {t.group ?? ""}
                    </td>
                  )}
                  <td>
                    <StateBadge state={t.state} />
                  </td>
                  <td class="num">{`${count(t.attempts)} / ${count(t.max_attempts)}`}</td>
                  <td title={t.created_at ?? ""}>{ago(t.created_at, now)}</td>
                  <td class="clip" title={t.error?.message ?? ""}>
                    {t.error?.message ? clip(String(t.error.message), 120) : ""}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={!cursor} onClick={() => navigate(pageHref(undefined))}>
          « Newest
        </button>
        <button
          type="button"
          disabled={!page.data?.next_cursor}
          onClick={() => page.data?.next_cursor && navigate(pageHref(page.data.next_cursor))}
        >
          Older »
        </button>
      </nav>
    </div>
  );
}

/** A button that runs one action on one task, e.g. from the task page. */
export async function taskAction(kind: Bulk, task: Task): Promise<Task | null | undefined> {
  const spec = BULK[kind];
  return act(
    `${spec.label} ${task.id}`,
    async () => {
      const result = await spec.run(task.id);
      return (result as Task | undefined) ?? null;
    },
    spec.danger
      ? {
          title: `${spec.label} this task?`,
          body:
            kind === "delete"
              ? `Task ${task.id} (${clip(task.name, 80)}) is deleted for good, with its payload and result.`
              : `Task ${task.id} (${clip(task.name, 80)}) will not run${task.state === "processing" ? "; its running attempt is stopped" : ""}.`,
          confirmLabel: `${spec.label} task`,
        }
      : undefined,
    () => `${spec.verb} ${task.id}`,
  );
}
