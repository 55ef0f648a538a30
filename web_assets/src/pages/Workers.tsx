// Workers: every tqd process sharing the store, its heartbeat and running tasks.
import { Section } from "../components/ui";
import { WorkerTable } from "../components/WorkerTable";
import { useLiveQueues } from "../live";

export function Workers() {
  useLiveQueues([]);
  return (
    <div class="page">
      <h1>Workers</h1>
      <Section title="Processes">
        <WorkerTable detailed={true} />
      </Section>
    </div>
  );
}
