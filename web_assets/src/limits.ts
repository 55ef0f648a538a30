// Queue limits as the dashboard shows and edits them: reading them from a
// queue's JSON (absent on an older tqd), short text for the page and the
// queue table, and the PATCH body an edit form produces. Pure functions, so
// logic.test.ts covers them; every result is plain text, shown as text nodes.
import type { Queue, QueueLimits } from "./types";

/** The fields of the edit form, in the order the form shows them. */
export const LIMIT_FIELDS = ["concurrency", "rate_limit", "rate_interval", "rate_burst", "group_concurrency"] as const;
export type LimitField = (typeof LIMIT_FIELDS)[number];

/** What the user typed in each field of the edit form. */
export type LimitsForm = Record<LimitField, string>;

/** The interval the API assumes when it reports none. */
const DEFAULT_INTERVAL = 1;

function intOrNull(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/**
 * The queue's limits, every field present; null when the queue JSON has no
 * `limits` (a tqd from before limits, which cannot change them either).
 */
export function limitsOf(queue: Queue): QueueLimits | null {
  const raw = queue.limits;
  if (!raw || typeof raw !== "object") return null;
  const interval = raw.rate_interval;
  return {
    concurrency: intOrNull(raw.concurrency),
    rate_limit: intOrNull(raw.rate_limit),
    rate_interval: typeof interval === "number" && interval > 0 ? interval : DEFAULT_INTERVAL,
    rate_burst: intOrNull(raw.rate_burst),
    group_concurrency: intOrNull(raw.group_concurrency),
  };
}

/** A limit as text: the number, or "none" when unset. */
export function limitText(value: number | null): string {
  return value === null ? "none" : String(value);
}

/** "10 per 1 s, burst 20"; the burst defaults to the rate; "none" without a rate. */
export function rateText(l: QueueLimits): string {
  if (l.rate_limit === null) return "none";
  const burst = l.rate_burst === null ? `${l.rate_limit} (default)` : String(l.rate_burst);
  return `${l.rate_limit} per ${l.rate_interval} s, burst ${burst}`;
}

/** One short line for the queue table, e.g. "4 running · 10/1 s · 2 per group"; "—" when none is set. */
export function limitsSummary(l: QueueLimits | null): string {
  if (!l) return "—";
  const parts: string[] = [];
  if (l.concurrency !== null) parts.push(`${l.concurrency} running`);
  if (l.rate_limit !== null) parts.push(`${l.rate_limit}/${l.rate_interval} s`);
  if (l.group_concurrency !== null) parts.push(`${l.group_concurrency} per group`);
  return parts.length ? parts.join(" · ") : "—";
}

/** The edit form filled with the current limits (empty: no limit). */
export function formOf(l: QueueLimits): LimitsForm {
  const text = (v: number | null) => (v === null ? "" : String(v));
  return {
    concurrency: text(l.concurrency),
    rate_limit: text(l.rate_limit),
    rate_interval: String(l.rate_interval),
    rate_burst: text(l.rate_burst),
    group_concurrency: text(l.group_concurrency),
  };
}

// A plain decimal number as typed; anything else (hex, "Infinity", "1,5")
// is refused here because JSON could not carry the user's meaning.
const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * The body of PATCH /v1/queues/{q} for an edited form: only the fields whose
 * value differs from `base` (the limits the form was filled from), an empty
 * field as null (no limit). Whether a number is allowed (>= 1, whole, at most
 * a day) is the API's to say: its error names the field. Here only text that
 * is no number at all is an error. An emptied rate interval means the
 * default (1 s), which the API takes as null.
 */
export function limitsPatch(base: QueueLimits, form: LimitsForm): { body: Partial<QueueLimits> } | { error: string } {
  const body: Record<string, number | null> = {};
  for (const field of LIMIT_FIELDS) {
    const text = form[field].trim();
    let value: number | null;
    if (text === "") {
      // The API takes null for the interval as "back to the default".
      if (field === "rate_interval" && base.rate_interval === DEFAULT_INTERVAL) continue;
      value = null;
    } else if (NUMBER.test(text)) {
      value = Number(text);
    } else {
      return { error: `${field}: not a number: ${text}` };
    }
    if (value !== base[field]) body[field] = value;
  }
  return { body: body as Partial<QueueLimits> };
}
