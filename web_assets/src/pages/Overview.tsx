// Overview: throughput and latency, every queue with its counts, live processes.
import { QueueTable } from "../components/QueueTable";
import { StatsCharts } from "../components/StatsCharts";
import { ErrorBox, Loading, Section } from "../components/ui";
import { WorkerTable } from "../components/WorkerTable";
import { count } from "../format";
import { useLiveQueues } from "../live";
import { useQueues } from "../queues";
import { STATES } from "../types";

export function Overview() {
  // Counts come with every "queues" message; no per-task events needed here.
  useLiveQueues([]);
  const { queues, error } = useQueues();
  const totals = Object.fromEntries(STATES.map((s) => [s, 0])) as Record<string, number>;
  for (const q of queues ?? []) for (const s of STATES) totals[s] += q.counts?.[s] ?? 0;
  return (
    <div class="page">
      <h1>Overview</h1>
      {queues && (
        <div class="tiles" data-testid="totals">
          {STATES.map((s) => (
            <div key={s} class={`tile state-${s}`} data-state={s}>
              <div class="tile-label">{s}</div>
              <div class="tile-value">{count(totals[s])}</div>
            </div>
          ))}
        </div>
      )}
      <StatsCharts />
      <Section title="Queues">
        {error && !queues ? <ErrorBox error={error} /> : queues ? <QueueTable queues={queues} /> : <Loading />}
      </Section>
      <Section title="Processes">
        <WorkerTable detailed={false} />
      </Section>
    </div>
  );
}
