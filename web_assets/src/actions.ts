// What every button that changes something shares: an optional confirmation
// first, then the call, then a notice with the API's own error when it fails.
import { ApiError } from "./api";
import { Signal } from "./signal";

export interface ConfirmRequest {
  title: string;
  body: string;
  confirmLabel: string;
  danger: boolean;
  resolve: (ok: boolean) => void;
}

export interface Notice {
  id: number;
  kind: "error" | "ok";
  text: string;
}

/** The confirmation dialog on screen, if any. */
export const confirmRequest = new Signal<ConfirmRequest | null>(null);
/** Messages about finished actions, newest last. */
export const notices = new Signal<Notice[]>([]);

let nextNotice = 1;

/** Show a message for a while (errors stay until dismissed). */
export function notify(kind: Notice["kind"], text: string): void {
  const notice = { id: nextNotice++, kind, text };
  notices.value = [...notices.value.slice(-4), notice];
  if (kind === "ok") window.setTimeout(() => dismiss(notice.id), 4000);
}

export function dismiss(id: number): void {
  notices.value = notices.value.filter((n) => n.id !== id);
}

/** Ask the user; resolves true when they confirm. */
export function ask(title: string, body: string, confirmLabel: string, danger = true): Promise<boolean> {
  return new Promise((resolve) => {
    confirmRequest.value?.resolve(false);
    confirmRequest.value = { title, body, confirmLabel, danger, resolve };
  });
}

/** The message to show for an error thrown by an action. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Run `fn` (after a confirmation when `confirm` is given); report failure with
 * the API's message, prefixed by `label`. Resolves with fn's result, or
 * undefined when cancelled or failed.
 */
export async function act<T>(
  label: string,
  fn: () => Promise<T>,
  confirm?: { title: string; body: string; confirmLabel: string; danger?: boolean },
  success?: (result: T) => string,
): Promise<T | undefined> {
  if (confirm && !(await ask(confirm.title, confirm.body, confirm.confirmLabel, confirm.danger ?? true))) {
    return undefined;
  }
  try {
    const result = await fn();
    if (success) notify("ok", success(result));
    return result;
  } catch (err) {
    notify("error", `${label}: ${describe(err)}`);
    return undefined;
  }
}

/** Run `fn` on each id, a few at a time; returns the failures by id. */
export async function eachId(
  ids: string[],
  fn: (id: string) => Promise<unknown>,
  parallel = 8,
): Promise<{ ok: number; failed: [string, string][] }> {
  const failed: [string, string][] = [];
  let ok = 0;
  let next = 0;
  async function lane(): Promise<void> {
    while (next < ids.length) {
      const id = ids[next++];
      try {
        await fn(id);
        ok++;
      } catch (err) {
        failed.push([id, describe(err)]);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, ids.length) }, lane));
  return { ok, failed };
}
