// Every call to tqd's REST API goes through `request`: it adds the token,
// turns {"error": {"code", "message"}} into an ApiError, and raises the
// token prompt when the API answers 401.
import { currentToken } from "./auth";
import { takePreload, type Answer } from "./preload";
import { Signal } from "./signal";
import type { Queue, QueueLimits, Schedule, Stats, Task, TaskPage, Worker } from "./types";

/** A failed API call: the API's own message when it sent one. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** True while the API wants a token that the user has not given yet. */
export const authRequired = new Signal(false);

/** The error message of an API answer, from its JSON body when it has one. */
export function errorMessage(status: number, body: unknown, statusText: string): { code: string; message: string } {
  if (body && typeof body === "object" && "error" in body) {
    const err = (body as { error: unknown }).error;
    if (err && typeof err === "object") {
      const e = err as { code?: unknown; message?: unknown };
      return {
        code: typeof e.code === "string" ? e.code : "http_error",
        message: typeof e.message === "string" ? e.message : `HTTP ${status}`,
      };
    }
  }
  return { code: "http_error", message: `HTTP ${status}${statusText ? " " + statusText : ""}` };
}

/** Relative to the page, so tqd also works behind a proxy under a sub-path. */
export function apiUrl(path: string): string {
  return new URL(path.replace(/^\//, ""), document.baseURI).toString();
}

/** One API request; resolves with the decoded JSON body (undefined for 204). */
export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const token = currentToken();
  let answer: Answer;
  try {
    const preloaded = method === "GET" && body === undefined ? takePreload(path, token) : null;
    answer = await (preloaded ?? send(method, path, token, body));
  } catch (err) {
    throw new ApiError(`cannot reach tqd (${(err as Error).message})`, 0, "unreachable");
  }
  let data: unknown = undefined;
  if (answer.text) {
    try {
      data = JSON.parse(answer.text);
    } catch {
      data = undefined;
    }
  }
  if (!answer.ok) {
    if (answer.status === 401) authRequired.value = true;
    const { code, message } = errorMessage(answer.status, data, answer.statusText);
    throw new ApiError(message, answer.status, code);
  }
  return data as T;
}

async function send(method: string, path: string, token: string | null, body: unknown): Promise<Answer> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(apiUrl(path), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  return { ok: resp.ok, status: resp.status, statusText: resp.statusText, text: await resp.text() };
}

const enc = encodeURIComponent;

/** Build a query string from the set values of `params`. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${enc(k)}=${enc(String(v))}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

export interface TaskFilter {
  state?: string;
  queue?: string;
  name?: string;
  cursor?: string;
  limit?: number;
}

/** The endpoints the dashboard uses, each a thin typed wrapper. */
export const api = {
  queues: () => request<{ queues: Queue[] }>("GET", "/v1/queues").then((r) => r.queues),
  queue: (name: string) => request<Queue>("GET", `/v1/queues/${enc(name)}`),
  pause: (name: string) => request<Queue>("POST", `/v1/queues/${enc(name)}/pause`),
  resume: (name: string) => request<Queue>("POST", `/v1/queues/${enc(name)}/resume`),
  redrive: (name: string) => request<Queue & { affected: number }>("POST", `/v1/queues/${enc(name)}/redrive`),
  purge: (name: string, state: string) =>
    request<Queue & { affected: number }>("POST", `/v1/queues/${enc(name)}/purge`, { state }),
  /** PATCH the given limits (null removes one); the others keep their values. */
  setLimits: (name: string, limits: Partial<QueueLimits>) => request<Queue>("PATCH", `/v1/queues/${enc(name)}`, limits),
  tasks: (f: TaskFilter) => request<TaskPage>("GET", `/v1/tasks${query({ ...f })}`),
  task: (id: string) => request<Task>("GET", `/v1/tasks/${enc(id)}`),
  retry: (id: string) => request<Task>("POST", `/v1/tasks/${enc(id)}/retry`),
  cancel: (id: string) => request<Task>("POST", `/v1/tasks/${enc(id)}/cancel`),
  remove: (id: string) => request<void>("DELETE", `/v1/tasks/${enc(id)}`),
  workers: () => request<{ workers: Worker[] }>("GET", "/v1/workers").then((r) => r.workers),
  stats: (range: string, queue?: string) => request<Stats>("GET", `/v1/stats${query({ range, queue })}`),
  schedules: () => request<{ schedules: Schedule[] }>("GET", "/v1/schedules").then((r) => r.schedules),
  trigger: (name: string) => request<unknown>("POST", `/v1/schedules/${enc(name)}/trigger`),
};
