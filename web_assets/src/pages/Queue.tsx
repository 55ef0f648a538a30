// Queue: counts, limits (where the API has them), pause/resume, purge by
// state, redrive the dead letters, and this queue's charts.
import { useEffect, useState } from "preact/hooks";
import { act, describe, notify } from "../actions";
import { api } from "../api";
import { StatsCharts } from "../components/StatsCharts";
import { ErrorBox, Loading, Section } from "../components/ui";
import { count } from "../format";
import { useLoad } from "../hooks";
import { formOf, LIMIT_FIELDS, limitsOf, limitsPatch, limitText, rateText, type LimitField, type LimitsForm } from "../limits";
import { queuesSignal, useLiveQueues, useOfflinePoll, useResync } from "../live";
import { refreshQueues, updateQueue } from "../queues";
import { href } from "../router";
import { useSignal } from "../signal";
import { STATES, type Queue as QueueT, type QueueLimits as QueueLimitsT } from "../types";

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

const LABELS: Record<LimitField, { label: string; hint: string }> = {
  concurrency: { label: "Concurrency", hint: "most tasks running at once, across all processes" },
  rate_limit: { label: "Rate limit", hint: "tasks started per interval" },
  rate_interval: { label: "Rate interval (s)", hint: "seconds, at most 86400 (empty: 1)" },
  rate_burst: { label: "Rate burst", hint: "most started at once after a quiet spell (empty: the rate limit)" },
  group_concurrency: { label: "Group concurrency", hint: "most tasks of one group running at once" },
};

/**
 * The queue's concurrency, rate and group limits, live, and a form to change
 * them: it PATCHes only the fields changed since it opened (empty: no
 * limit) and shows the API's error inline. Nothing when this tqd reports no
 * limits (it predates them).
 */
function Limits({ queue, onChange }: { queue: QueueT; onChange: (q: QueueT) => void }) {
  const limits = limitsOf(queue);
  // The limits the open form was filled from (null: form closed).
  const [base, setBase] = useState<QueueLimitsT | null>(null);
  const [form, setForm] = useState<LimitsForm | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (!limits) return null;

  function open() {
    if (!limits) return;
    setBase(limits);
    setForm(formOf(limits));
    setProblem(null);
  }
  function close() {
    setBase(null);
    setForm(null);
    setProblem(null);
  }
  async function save(e: Event) {
    e.preventDefault();
    if (!base || !form || busy) return;
    const patch = limitsPatch(base, form);
    if ("error" in patch) {
      setProblem(patch.error);
      return;
    }
    if (Object.keys(patch.body).length === 0) {
      close();
      return;
    }
    setBusy(true);
    try {
      const q = await api.setLimits(queue.name, patch.body);
      close();
      notify("ok", `limits of ${q.name} saved`);
      onChange(q);
    } catch (err) {
      setProblem(describe(err));
    } finally {
      setBusy(false);
    }
  }

  const edit = (
    <button type="button" onClick={open} disabled={form !== null} data-testid="limits-edit">
      Edit limits
    </button>
  );
  return (
    <Section title="Limits" actions={edit}>
      <dl class="facts" data-testid="limits">
        <dt>Concurrency</dt>
        <dd data-limit="concurrency">{limitText(limits.concurrency)}</dd>
        <dt>Rate</dt>
        <dd data-limit="rate">{rateText(limits)}</dd>
        <dt>Group concurrency</dt>
        <dd data-limit="group_concurrency">{limitText(limits.group_concurrency)}</dd>
      </dl>
      {form && (
        <form class="limits" onSubmit={save} data-testid="limits-form">
          <p class="muted">Empty: no limit. Only the fields you change are sent.</p>
          <div class="limit-fields">
            {LIMIT_FIELDS.map((f) => (
              <label key={f}>
                <span>{LABELS[f].label}</span>
                <input
                  name={f}
                  inputMode="decimal"
                  autoComplete="off"
                  value={form[f]}
                  placeholder={f === "rate_interval" ? "1" : "none"}
                  onInput={(e) => setForm({ ...form, [f]: (e.target as HTMLInputElement).value })}
                />
                <small class="muted">{LABELS[f].hint}</small>
              </label>
            ))}
          </div>
          {problem && (
            <div data-testid="limits-error">
              <ErrorBox error={problem} />
            </div>
          )}
          <div class="action-row">
            <button type="submit" class="primary" disabled={busy}>
              Save limits
            </button>
            <button type="button" onClick={close} disabled={busy}>
              Cancel
            </button>
          </div>
        </form>
      )}
    </Section>
  );
}
