// Tasks: filter by state, queue and name, find one by id, page with the
// cursor, and act on many at once. The filters live in the URL.
import { useEffect, useState } from "preact/hooks";
import { TaskTable } from "../components/TaskTable";
import { Section } from "../components/ui";
import { useQueues } from "../queues";
import { href, navigate } from "../router";
import { STATES } from "../types";

export function Tasks({ params }: { params: URLSearchParams }) {
  const state = params.get("state") || undefined;
  const queue = params.get("queue") || undefined;
  const name = params.get("name") || undefined;
  const cursor = params.get("cursor") || undefined;
  const { queues } = useQueues();
  const [nameInput, setNameInput] = useState(name ?? "");
  const [idInput, setIdInput] = useState("");
  useEffect(() => setNameInput(name ?? ""), [name]);

  function go(next: { state?: string; queue?: string; name?: string }) {
    navigate(href.tasks({ state, queue, name, ...next }));
  }
  function find(e: Event) {
    e.preventDefault();
    const id = idInput.trim();
    if (id) navigate(href.task(id));
  }
  return (
    <div class="page">
      <h1>Tasks</h1>
      <Section title="Filter">
        <div class="filters">
          <label>
            {"State "}
            <select value={state ?? ""} onChange={(e) => go({ state: (e.target as HTMLSelectElement).value || undefined })}>
              <option value="">any</option>
              {STATES.map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <label>
            {"Queue "}
            <select value={queue ?? ""} onChange={(e) => go({ queue: (e.target as HTMLSelectElement).value || undefined })}>
              <option value="">any</option>
              {queue && !(queues ?? []).some((q) => q.name === queue) && <option value={queue}>{queue}</option>}
              {(queues ?? []).map((q) => (
                <option key={q.name} value={q.name}>
                  {q.name}
                </option>
              ))}
            </select>
          </label>
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              go({ name: nameInput.trim() || undefined });
            }}
          >
            <label>
              {"Name "}
              <input name="name" placeholder="exact task name" value={nameInput} onInput={(e) => setNameInput((e.target as HTMLInputElement).value)} />
            </label>
            <button type="submit">Apply</button>
          </form>
          <form class="inline" onSubmit={find}>
            <label>
              {"Find by id "}
              <input name="id" class="mono" placeholder="task id" value={idInput} onInput={(e) => setIdInput((e.target as HTMLInputElement).value)} />
            </label>
            <button type="submit">Open</button>
          </form>
        </div>
      </Section>
      <Section title="Tasks, newest first">
        <TaskTable
          filter={{ state, queue, name, cursor }}
          pageHref={(c) => href.tasks({ state, queue, name, cursor: c })}
          empty="No tasks match these filters."
        />
      </Section>
    </div>
  );
}
