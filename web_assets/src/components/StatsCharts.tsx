// Throughput and latency charts from GET /v1/stats, for all queues or one.
// They refresh while the event stream reports changes (at most every 2 s)
// and on a slow timer so the time axis keeps moving when nothing happens.
import { useEffect, useMemo, useState } from "preact/hooks";
import { api } from "../api";
import { useInterval, useLoad, useThrottle } from "../hooks";
import { queuesSignal, useResync } from "../live";
import { toColumns } from "../stats";
import type { Chart as ChartT } from "./Chart";
import { ErrorBox, Section } from "./ui";

const RANGES = ["10m", "24h"] as const;

// uPlot is half of the app's code and only these charts use it: it loads as
// a separate chunk, so pages without charts start faster.
let chartModule: Promise<typeof ChartT> | null = null;
function loadChart(): Promise<typeof ChartT> {
  chartModule ??= import("./Chart").then((m) => m.Chart);
  return chartModule;
}

function useChart(): typeof ChartT | null {
  const [chart, setChart] = useState<typeof ChartT | null>(null);
  useEffect(() => {
    let live = true;
    loadChart().then((c) => live && setChart(() => c));
    return () => {
      live = false;
    };
  }, []);
  return chart;
}

export function StatsCharts({ queue }: { queue?: string }) {
  const Chart = useChart();
  const [range, setRange] = useState<(typeof RANGES)[number]>("10m");
  const stats = useLoad(() => api.stats(range, queue), [range, queue]);
  const refresh = useThrottle(stats.reload, 2000);
  useEffect(() => queuesSignal.subscribe(refresh), [refresh]);
  useResync(refresh, [refresh]);
  useInterval(refresh, range === "10m" ? 10000 : 60000);
  const cols = useMemo(() => (stats.data ? toColumns(stats.data) : null), [stats.data]);

  const picker = (
    <div class="segmented" role="group" aria-label="Time range">
      {RANGES.map((r) => (
        <button type="button" key={r} class={r === range ? "selected" : ""} aria-pressed={r === range} onClick={() => setRange(r)}>
          {r === "10m" ? "10 minutes" : "24 hours"}
        </button>
      ))}
    </div>
  );
  let body;
  if (stats.status === 404) body = <p class="muted">This tqd does not serve statistics (GET /v1/stats).</p>;
  else if (stats.error && !cols) body = <ErrorBox error={stats.error} />;
  else if (!cols || !Chart) body = <div class="charts placeholder" />;
  else
    body = (
      <div class="charts">
        <Chart
          title="Throughput (tasks per second)"
          unit="/s"
          series={[
            { label: "enqueued", color: "#3b82f6" },
            { label: "completed", color: "#16a34a" },
            { label: "failed", color: "#dc2626" },
          ]}
          data={cols.rates}
        />
        <Chart
          title="Latency p50 and p99 (ms)"
          unit="ms"
          series={[
            { label: "p50", color: "#7c3aed" },
            { label: "p99", color: "#ea580c" },
          ]}
          data={cols.latency}
        />
      </div>
    );
  return (
    <Section title={queue ? "Throughput and latency of this queue" : "Throughput and latency"} actions={picker}>
      {body}
    </Section>
  );
}
