// Turning GET /v1/stats answers into chart columns.
import type { Stats } from "./types";

/** Per-second rates and latencies as uPlot columns. */
export function toColumns(stats: Stats): { rates: (number | null)[][]; latency: (number | null)[][] } {
  const step = stats.step > 0 ? stats.step : 1;
  const t = stats.series.map((p) => p.t);
  const per = (k: "enqueued" | "completed" | "failed") => stats.series.map((p) => p[k] / step);
  return {
    rates: [t, per("enqueued"), per("completed"), per("failed")],
    latency: [t, stats.series.map((p) => p.latency_p50_ms), stats.series.map((p) => p.latency_p99_ms)],
  };
}
