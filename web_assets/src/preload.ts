// The request that index.html starts before the app's code has loaded (a
// task page's task), handed to the app's first request for the same thing.

/** An API answer as `request` reads it. */
export interface Answer {
  ok: boolean;
  status: number;
  statusText: string;
  text: string;
}

interface Preload {
  /** The API path, relative to the page (no leading slash). */
  path: string;
  /** The token the request carried (null: none). */
  token: string | null;
  answer: Promise<Answer>;
}

declare global {
  interface Window {
    __tqdPreload?: Preload;
  }
}

/**
 * The answer index.html asked for, if it asked for GET `path` with `token`;
 * it is handed out once. Anything else (another path, another token, a later
 * call after `dropPreload`) gets null and makes its own request.
 */
export function takePreload(path: string, token: string | null): Promise<Answer> | null {
  const p = window.__tqdPreload;
  if (!p || p.path !== path.replace(/^\//, "") || p.token !== token) return null;
  delete window.__tqdPreload;
  return p.answer;
}

/**
 * Forget an answer nobody took. Called once the first page has rendered:
 * later, the answer would be stale (a page must show what is current when
 * it opens, and the event stream only reports changes from its start on).
 */
export function dropPreload(): void {
  delete window.__tqdPreload;
}
