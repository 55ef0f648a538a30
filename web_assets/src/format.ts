// Turning API values into short text for tables. Everything here returns
// plain strings: the UI renders them as text nodes, never as HTML.

/** Milliseconds since the epoch of an RFC 3339 time, or null. */
export function parseTime(value: string | null | undefined): number | null {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** "3 s", "4 min", "2 h", "5 d": a duration in the largest fitting unit. */
export function duration(ms: number): string {
  const s = Math.abs(ms) / 1000;
  if (s < 1) return `${Math.round(Math.abs(ms))} ms`;
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** "3 s ago" / "in 4 min" relative to `now`; "—" for no time. */
export function ago(value: string | null | undefined, now: number = Date.now()): string {
  const ms = parseTime(value);
  if (ms === null) return "—";
  const d = now - ms;
  return d >= 0 ? `${duration(d)} ago` : `in ${duration(d)}`;
}

/** A local date and time with seconds, e.g. "2026-11-01 14:03:07". */
export function localTime(value: string | null | undefined): string {
  const ms = parseTime(value);
  if (ms === null) return "—";
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** JSON pretty-printed with two-space indents ("null" for undefined). */
export function pretty(value: unknown): string {
  if (value === undefined) return "null";
  try {
    return JSON.stringify(value, null, 2) ?? "null";
  } catch {
    return String(value);
  }
}

/**
 * A number with thousands separators ("1,234,567"). Integers are grouped
 * here rather than by toLocaleString: a page's first toLocaleString loads
 * the browser's number formatting (tens of ms), on the way to showing a task.
 */
export function count(n: number | null | undefined): string {
  if (typeof n !== "number") return "—";
  if (!Number.isSafeInteger(n)) return n.toLocaleString("en-US");
  const digits = String(Math.abs(n));
  let out = digits.slice(0, digits.length % 3 || 3);
  for (let i = out.length; i < digits.length; i += 3) out += `,${digits.slice(i, i + 3)}`;
  return n < 0 ? `-${out}` : out;
}

/** At most `max` characters, with an ellipsis when cut. */
export function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Progress as the API may report it: a fraction, or {fraction|value, message}. */
export function progressOf(value: unknown): { fraction: number | null; message: string } | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return { fraction: value, message: "" };
  if (typeof value === "object") {
    const v = value as Record<string, unknown>;
    const f = [v.fraction, v.value, v.progress].find((x) => typeof x === "number") as number | undefined;
    return { fraction: f ?? null, message: typeof v.message === "string" ? v.message : "" };
  }
  return { fraction: null, message: String(value) };
}
