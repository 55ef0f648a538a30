// Unit tests of the app's pure logic (run by `npm test`; the pages are
// tested end to end in Chromium by tests/dashboard/).
import { describe, expect, it } from "vitest";
import { errorMessage, query } from "./api";
import { socketProtocols } from "./auth";
import { ago, clip, count, duration, pretty, progressOf } from "./format";
import { formOf, limitsOf, limitsPatch, limitsSummary, limitText, rateText } from "./limits";
import { backoff, LAG_RESYNC_MS, lagResyncDelay } from "./live";
import { href, parseHash } from "./router";
import { toColumns } from "./stats";

describe("routes", () => {
  it("parses every page", () => {
    expect(parseHash("")).toEqual({ page: "overview" });
    expect(parseHash("#/")).toEqual({ page: "overview" });
    expect(parseHash("#/queues/mail")).toEqual({ page: "queue", name: "mail" });
    expect(parseHash("#/tasks/00ABC")).toEqual({ page: "task", id: "00ABC" });
    expect(parseHash("#/workers")).toEqual({ page: "workers" });
    expect(parseHash("#/schedules")).toEqual({ page: "schedules" });
    const tasks = parseHash("#/tasks?state=failed&queue=a%20b");
    expect(tasks.page).toBe("tasks");
    if (tasks.page === "tasks") expect(tasks.params.get("queue")).toBe("a b");
    expect(parseHash("#/dead?queue=x").page).toBe("dead");
    expect(parseHash("#/nope/1/2")).toEqual({ page: "notfound", path: "/nope/1/2" });
    expect(parseHash("#/queues/%E0%A4%A")).toEqual({ page: "notfound", path: "/queues/%E0%A4%A" });
  });

  it("round-trips any name through a link", () => {
    const name = `<script>"a/b?c#d`;
    expect(parseHash(href.queue(name))).toEqual({ page: "queue", name });
    expect(parseHash(href.task(name))).toEqual({ page: "task", id: name });
    const r = parseHash(href.tasks({ queue: name, state: "pending", name: undefined }));
    if (r.page !== "tasks") throw new Error("not the tasks page");
    expect(r.params.get("queue")).toBe(name);
    expect(r.params.has("name")).toBe(false);
  });
});

describe("API helpers", () => {
  it("takes the API's error message", () => {
    expect(errorMessage(409, { error: { code: "conflict", message: "task is processing" } }, "Conflict")).toEqual({
      code: "conflict",
      message: "task is processing",
    });
    expect(errorMessage(502, undefined, "Bad Gateway")).toEqual({ code: "http_error", message: "HTTP 502 Bad Gateway" });
  });

  it("builds query strings from set values only", () => {
    expect(query({ state: "failed", queue: undefined, name: "", limit: 50 })).toBe("?state=failed&limit=50");
    expect(query({ q: "a&b=c" })).toBe("?q=a%26b%3Dc");
    expect(query({})).toBe("");
  });

  it("offers the token as a WebSocket sub-protocol only when it can carry it", () => {
    expect(socketProtocols(null)).toEqual([]);
    expect(socketProtocols("abc-DEF_123.x~")).toEqual(["tqd", "bearer.abc-DEF_123.x~"]);
    expect(socketProtocols("has space")).toEqual([]);
    expect(socketProtocols("a/b=")).toEqual([]);
  });
});

describe("formatting", () => {
  it("says durations and ages briefly", () => {
    expect(duration(250)).toBe("250 ms");
    expect(duration(42_000)).toBe("42 s");
    expect(duration(5 * 60_000)).toBe("5 min");
    expect(duration(3 * 3_600_000)).toBe("3 h");
    expect(duration(2 * 86_400_000)).toBe("2 d");
    const now = Date.parse("2026-01-01T00:01:00Z");
    expect(ago("2026-01-01T00:00:00Z", now)).toBe("1 min ago");
    expect(ago("2026-01-01T00:02:00Z", now)).toBe("in 1 min");
    expect(ago(null, now)).toBe("—");
  });

  it("groups thousands as en-US does", () => {
    const values = [0, 7, 12, 999, 1000, 1234, 12_345, 123_456, 1_234_567, 1_000_000, -1, -999, -1000, -1_234_567];
    for (const v of [...values, Number.MAX_SAFE_INTEGER, 1.5, 1e21, NaN]) expect(count(v)).toBe(v.toLocaleString("en-US"));
    expect(count(null)).toBe("—");
    expect(count(undefined)).toBe("—");
  });

  it("pretty-prints JSON and clips long text", () => {
    expect(pretty({ a: [1] })).toBe('{\n  "a": [\n    1\n  ]\n}');
    expect(pretty(undefined)).toBe("null");
    expect(clip("abcdef", 4)).toBe("abc…");
    expect(clip("abc", 4)).toBe("abc");
  });

  it("reads progress in the shapes the API may send", () => {
    expect(progressOf(undefined)).toBeNull();
    expect(progressOf(0.5)).toEqual({ fraction: 0.5, message: "" });
    expect(progressOf({ fraction: 0.25, message: "step 1" })).toEqual({ fraction: 0.25, message: "step 1" });
    expect(progressOf({ message: "warming up" })).toEqual({ fraction: null, message: "warming up" });
  });
});

describe("live stream", () => {
  it("refetches after lagged at once, then at most every LAG_RESYNC_MS", () => {
    expect(lagResyncDelay(-Infinity, 1000)).toBe(0);
    expect(lagResyncDelay(1000, 1500)).toBe(LAG_RESYNC_MS - 500);
    expect(lagResyncDelay(1000, 1000 + LAG_RESYNC_MS + 1)).toBe(0);
  });

  it("backs off exponentially to 15 s, with jitter", () => {
    const mid = () => 0.5;
    expect([0, 1, 2, 3, 4, 5, 10].map((n) => backoff(n, mid))).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000]);
    expect(backoff(0, () => 0)).toBe(375);
    expect(backoff(0, () => 1)).toBe(625);
  });
});

describe("stats", () => {
  it("turns buckets into per-second rates and keeps latency gaps", () => {
    const cols = toColumns({
      range: "24h",
      step: 60,
      series: [
        { t: 60, enqueued: 120, completed: 60, failed: 0, latency_p50_ms: 1.5, latency_p99_ms: null },
        { t: 120, enqueued: 0, completed: 6, failed: 3, latency_p50_ms: null, latency_p99_ms: 9 },
      ],
    });
    expect(cols.rates).toEqual([[60, 120], [2, 0], [1, 0.1], [0, 0.05]]);
    expect(cols.latency).toEqual([[60, 120], [1.5, null], [null, 9]]);
  });
});

describe("queue limits", () => {
  const none = { concurrency: null, rate_limit: null, rate_interval: 1, rate_burst: null, group_concurrency: null };
  const some = { concurrency: 4, rate_limit: 10, rate_interval: 60, rate_burst: 20, group_concurrency: 2 };
  const queue = (limits?: unknown) => ({ name: "q", paused: false, counts: {}, ...(limits === undefined ? {} : { limits }) }) as never;

  it("reads them from a queue, tolerating an older tqd without them", () => {
    expect(limitsOf(queue())).toBeNull();
    expect(limitsOf(queue(null))).toBeNull();
    expect(limitsOf(queue(some))).toEqual(some);
    // Missing or odd fields read as no limit, a missing interval as 1 s.
    expect(limitsOf(queue({ concurrency: 3, rate_limit: "x" }))).toEqual({ ...none, concurrency: 3 });
  });

  it("shows them as text, with none when unset", () => {
    expect(limitText(null)).toBe("none");
    expect(limitText(4)).toBe("4");
    expect(rateText(none)).toBe("none");
    expect(rateText(some)).toBe("10 per 60 s, burst 20");
    expect(rateText({ ...none, rate_limit: 5, rate_interval: 0.5 })).toBe("5 per 0.5 s, burst 5 (default)");
    expect(limitsSummary(null)).toBe("—");
    expect(limitsSummary(none)).toBe("—");
    expect(limitsSummary(some)).toBe("4 running · 10/60 s · 2 per group");
    expect(limitsSummary({ ...none, group_concurrency: 1 })).toBe("1 per group");
  });

  it("fills the form: empty for no limit", () => {
    expect(formOf(none)).toEqual({ concurrency: "", rate_limit: "", rate_interval: "1", rate_burst: "", group_concurrency: "" });
    expect(formOf(some)).toEqual({ concurrency: "4", rate_limit: "10", rate_interval: "60", rate_burst: "20", group_concurrency: "2" });
  });

  it("sends only the changed fields, an emptied one as null", () => {
    expect(limitsPatch(some, formOf(some))).toEqual({ body: {} });
    // Same value written differently is no change.
    expect(limitsPatch(some, { ...formOf(some), concurrency: " 4.0 ", rate_interval: "6e1" })).toEqual({ body: {} });
    expect(limitsPatch(some, { ...formOf(some), concurrency: "8", rate_burst: "" })).toEqual({
      body: { concurrency: 8, rate_burst: null },
    });
    expect(limitsPatch(none, { ...formOf(none), rate_limit: "100", rate_interval: "0.5" })).toEqual({
      body: { rate_limit: 100, rate_interval: 0.5 },
    });
  });

  it("leaves range checks to the API but refuses what is no number", () => {
    // 0, negatives and fractions go to the API, whose error names the field.
    expect(limitsPatch(none, { ...formOf(none), concurrency: "0" })).toEqual({ body: { concurrency: 0 } });
    expect(limitsPatch(none, { ...formOf(none), group_concurrency: "-2.5" })).toEqual({ body: { group_concurrency: -2.5 } });
    for (const bad of ["abc", "0x10", "Infinity", "1,5", "4 tasks"]) {
      expect(limitsPatch(none, { ...formOf(none), concurrency: bad })).toEqual({ error: `concurrency: not a number: ${bad}` });
    }
  });

  it("takes an emptied rate interval as the default, 1 s", () => {
    expect(limitsPatch(some, { ...formOf(some), rate_interval: " " })).toEqual({ body: { rate_interval: null } });
    expect(limitsPatch(none, { ...formOf(none), rate_interval: "" })).toEqual({ body: {} });
  });
});
