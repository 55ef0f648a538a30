// The modal dialogs: confirmation of destructive actions and the token prompt.
import { useEffect, useRef, useState } from "preact/hooks";
import { confirmRequest, dismiss, notices } from "../actions";
import { authRequired } from "../api";
import { currentToken, setToken } from "../auth";
import { useSignal } from "../signal";

/** Shows the pending confirmation, if any (Escape or Cancel says no). */
export function ConfirmDialog() {
  const req = useSignal(confirmRequest);
  const okRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (!req) return;
    okRef.current?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") answer(false);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [req]);
  if (!req) return null;
  function answer(ok: boolean) {
    confirmRequest.value = null;
    req!.resolve(ok);
  }
  return (
    <div class="modal-backdrop">
      <div class="modal" role="dialog" aria-modal="true" aria-labelledby="confirm-title">
        <h2 id="confirm-title">{req.title}</h2>
        <p class="modal-body">{req.body}</p>
        <div class="modal-actions">
          <button type="button" onClick={() => answer(false)}>
            Back
          </button>
          <button type="button" ref={okRef} class={req.danger ? "danger" : "primary"} onClick={() => answer(true)}>
            {req.confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}

/**
 * Asks for an API token when the API answered 401. The token is kept in
 * sessionStorage for this tab and sent as "Authorization: Bearer …".
 */
export function TokenPrompt({ onToken }: { onToken: () => void }) {
  const needed = useSignal(authRequired);
  const [value, setValue] = useState("");
  if (!needed) return null;
  const hadToken = currentToken() !== null;
  function submit(e: Event) {
    e.preventDefault();
    const token = value.trim();
    if (!token) return;
    setToken(token);
    setValue("");
    authRequired.value = false;
    onToken();
  }
  return (
    <div class="modal-backdrop">
      <form class="modal" role="dialog" aria-modal="true" aria-labelledby="token-title" onSubmit={submit}>
        <h2 id="token-title">API token required</h2>
        <p class="modal-body">
          {hadToken
            ? "tqd refused the token given in this session. Enter a valid one."
            : "This tqd asks for a token. It is kept in this browser tab only, until you close it."}
        </p>
        <label>
          Token
          <input
            type="password"
            name="token"
            autoComplete="off"
            autoFocus
            value={value}
            onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          />
        </label>
        <div class="modal-actions">
          <button type="submit" class="primary">
            Use token
          </button>
        </div>
      </form>
    </div>
  );
}

/** Results of actions; errors stay until dismissed. */
export function Notices() {
  const list = useSignal(notices);
  if (!list.length) return null;
  return (
    <div class="notices" aria-live="polite">
      {list.map((n) => (
        <div key={n.id} class={`notice notice-${n.kind}`} role={n.kind === "error" ? "alert" : "status"}>
          <span>{n.text}</span>
          <button type="button" class="link" aria-label="Dismiss" onClick={() => dismiss(n.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
