// Dead letters: failed tasks, per queue or all, with redrive per queue.
import { act } from "../actions";
import { api } from "../api";
import { TaskTable } from "../components/TaskTable";
import { Section } from "../components/ui";
import { count } from "../format";
import { useQueues, updateQueue } from "../queues";
import { href, navigate } from "../router";

export function DeadLetters({ params }: { params: URLSearchParams }) {
  const queue = params.get("queue") || undefined;
  const cursor = params.get("cursor") || undefined;
  const { queues } = useQueues();
  const withFailed = (queues ?? []).filter((q) => (q.counts?.failed ?? 0) > 0);

  async function redrive(name: string, n: number) {
    const q = await act(
      `Redrive ${name}`,
      () => api.redrive(name),
      {
        title: "Redrive the dead letters?",
        body: `Every failed task of queue ${name} (${count(n)} now) goes back to pending and runs again.`,
        confirmLabel: "Redrive",
        danger: false,
      },
      (r) => `${count(r.affected)} task${r.affected === 1 ? "" : "s"} of ${name} back to pending`,
    );
    if (q) updateQueue(q);
  }
  return (
    <div class="page">
      <h1>Dead letters</h1>
      <Section title="By queue">
        {withFailed.length === 0 ? (
          <p class="muted">No failed tasks in any queue.</p>
        ) : (
          <table class="data">
            <thead>
              <tr>
                <th>Queue</th>
                <th class="num">Failed</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {withFailed.map((q) => (
                <tr key={q.name}>
                  <td>
                    <a href={href.dead({ queue: q.name })}>{q.name}</a>
                  </td>
                  <td class="num">{count(q.counts.failed)}</td>
                  <td>
                    <button type="button" onClick={() => redrive(q.name, q.counts.failed)}>
                      Redrive all
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section
        title={queue ? `Failed tasks of ${queue}` : "Failed tasks, newest first"}
        actions={queue ? <button type="button" class="link" onClick={() => navigate(href.dead())}>All queues</button> : undefined}
      >
        <TaskTable
          filter={{ state: "failed", queue, cursor }}
          pageHref={(c) => href.dead({ queue, cursor: c })}
          empty="No dead letters here."
        />
      </Section>
    </div>
  );
}
