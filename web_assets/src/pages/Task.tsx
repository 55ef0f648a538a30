// Task: payload, result and error pretty-printed, attempts with their
// errors, timeline, progress; retry, cancel, delete. Refetches when the
// event stream reports a change of this task.
import { taskAction } from "../components/TaskTable";
import { ErrorBox, Json, Loading, Section, StateBadge } from "../components/ui";
import { ago, count, localTime, progressOf } from "../format";
import { useInterval, useLoad, useNow, useThrottle } from "../hooks";
import { api } from "../api";
import { useLiveQueues, useOfflinePoll, useResync, useTaskEvents } from "../live";
import { href, navigate } from "../router";
import type { Task as TaskT, TaskError } from "../types";

const RETRYABLE = new Set(["failed", "cancelled"]);
const CANCELLABLE = new Set(["pending", "scheduled", "processing"]);

export function Task({ id }: { id: string }) {
  const task = useLoad(() => api.task(id), [id]);
  const t = task.data;
  useLiveQueues(t ? [t.queue] : []);
  const refetch = useThrottle(task.reload, 300);
  useTaskEvents((e) => e.id === id && refetch(), [id, refetch]);
  useResync(refetch, [refetch]);
  useOfflinePoll(refetch, 3000);
  // Progress reports are not state changes: poll while it runs.
  useInterval(() => t?.state === "processing" && t.progress !== undefined && refetch(), 2000);

  if (!t) {
    return (
      <div class="page">
        <h1>{`Task ${id}`}</h1>
        {task.error ? <ErrorBox error={task.error} /> : <Loading />}
      </div>
    );
  }
  return <TaskView task={t} stale={task.error} onChange={task.reload} />;
}

function TaskView({ task: t, stale, onChange }: { task: TaskT; stale: string | null; onChange: () => void }) {
  const now = useNow();
  async function run(kind: "retry" | "cancel" | "delete") {
    const result = await taskAction(kind, t);
    if (result === undefined) return;
    if (kind === "delete") navigate(href.tasks({ queue: t.queue }));
    else onChange();
  }
  const progress = progressOf(t.progress);
  const errors: TaskError[] = t.errors ?? (t.error ? [t.error] : []);
  const times: [string, string | null][] = [
    ["created", t.created_at],
    ["run at", t.run_at],
    ["started", t.started_at],
    ["finished", t.finished_at],
  ];
  return (
    <div class="page">
      <div class="page-head">
        <h1>
          {"Task "}
          <span class="mono">{t.id}</span>
        </h1>
        <StateBadge state={t.state} />
        <div class="spacer" />
        <button type="button" class="primary" disabled={!RETRYABLE.has(t.state)} onClick={() => run("retry")}>
          Retry
        </button>
        <button type="button" class="danger" disabled={!CANCELLABLE.has(t.state)} onClick={() => run("cancel")}>
          Cancel
        </button>
        <button type="button" class="danger" disabled={t.state === "processing"} onClick={() => run("delete")}>
          Delete
        </button>
      </div>
      {stale && <ErrorBox error={`Could not refresh: ${stale}`} />}
      <Section title="Summary">
        <dl class="facts" data-testid="task-facts">
          <dt>Name</dt>
          <dd class="wrap" data-testid="task-name">
            {t.name}
          </dd>
          <dt>Queue</dt>
          <dd class="wrap">
            <a href={href.queue(t.queue)}>{t.queue}</a>
          </dd>
          {"group" in t && (
            <>
              <dt>Group</dt>
              <dd class="wrap" data-testid="task-group">
                {t.group ?? "—"}
              </dd>
            </>
          )}
          <dt>Priority</dt>
          <dd>{t.priority}</dd>
          <dt>Attempts</dt>
          <dd>{`${count(t.attempts)} of ${count(t.max_attempts)}`}</dd>
          <dt>Timeout</dt>
          <dd>{t.timeout == null ? "none" : `${t.timeout} s`}</dd>
          <dt>Idempotency key</dt>
          <dd class="wrap">{t.idempotency_key ?? "—"}</dd>
          <dt>Worker</dt>
          <dd class="wrap mono">{t.worker ?? "—"}</dd>
        </dl>
      </Section>
      {progress && (
        <Section title="Progress">
          <div class="progress">
            {progress.fraction !== null && (
              <progress max={1} value={Math.min(1, Math.max(0, progress.fraction))}>
                {`${Math.round(progress.fraction * 100)} %`}
              </progress>
            )}
            <span>{progress.fraction !== null ? `${Math.round(progress.fraction * 100)} %` : ""}</span>
            <span class="wrap">{progress.message}</span>
          </div>
        </Section>
      )}
      <Section title="Timeline">
        <ol class="timeline" data-testid="timeline">
          {times.map(([label, at]) => (
            <li key={label} class={at ? "" : "muted"}>
              <span class="tl-label">{label}</span>
              <span>{localTime(at)}</span>
              <span class="muted">{at ? ago(at, now) : ""}</span>
            </li>
          ))}
        </ol>
      </Section>
      <div class="two-col">
        <Section title="Payload">
          <Json value={t.payload} label="payload" />
        </Section>
        <Section title="Result">
          <Json value={t.result} label="result" />
        </Section>
      </div>
      <Section title={`Errors (${errors.length})`}>
        {errors.length === 0 ? (
          <p class="muted">No attempt has failed.</p>
        ) : (
          <table class="data" data-testid="attempts">
            <thead>
              <tr>
                <th class="num">Attempt</th>
                <th>Kind</th>
                <th>When</th>
                <th>Message</th>
              </tr>
            </thead>
            <tbody>
              {[...errors].reverse().map((e, i) => (
                <tr key={i}>
                  <td class="num">{e.attempt ?? "—"}</td>
                  <td>{e.kind ?? ""}</td>
                  <td title={e.at ?? ""}>{localTime(e.at)}</td>
                  <td>
                    <pre class="message">{String(e.message ?? "")}</pre>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {t.error && (
          <details>
            <summary>Last error as JSON</summary>
            <Json value={t.error} label="error" />
          </details>
        )}
      </Section>
    </div>
  );
}
