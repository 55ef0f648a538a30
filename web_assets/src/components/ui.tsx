// Small building blocks shared by the pages. Values from tasks are always
// passed as children (text nodes); nothing here sets HTML.
import type { ComponentChildren } from "preact";
import { pretty } from "../format";

/** A task state as a coloured label. */
export function StateBadge({ state }: { state: string }) {
  return <span class={`badge state-${/^[a-z]+$/.test(state) ? state : "other"}`}>{state}</span>;
}

/** A load error, with the API's message. */
export function ErrorBox({ error, children }: { error: string; children?: ComponentChildren }) {
  return (
    <div class="error-box" role="alert">
      {error}
      {children}
    </div>
  );
}

export function Loading() {
  return <p class="muted">Loading…</p>;
}

/** A JSON value pretty-printed in a scrollable block. */
export function Json({ value, label }: { value: unknown; label: string }) {
  return (
    <pre class="json" aria-label={label} data-testid={`json-${label}`}>
      {pretty(value)}
    </pre>
  );
}

/** A titled block of a page. */
export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{title}</h2>
        {actions && <div class="card-actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}
