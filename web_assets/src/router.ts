// Hash routing: every page has its own bookmarkable URL such as
// #/queues/default or #/tasks?state=failed&queue=mail. The server only ever
// serves "/", so no path needs a fallback route.
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "overview" }
  | { page: "queue"; name: string }
  | { page: "tasks"; params: URLSearchParams }
  | { page: "task"; id: string }
  | { page: "dead"; params: URLSearchParams }
  | { page: "workers" }
  | { page: "schedules" }
  | { page: "notfound"; path: string };

function decode(part: string): string | null {
  try {
    return decodeURIComponent(part);
  } catch {
    return null;
  }
}

/** The route a location hash names ("" and "#/" are the overview). */
export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#/, "") || "/";
  const q = raw.indexOf("?");
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
  const parts = path.split("/").filter(Boolean);
  if (parts.length === 0) return { page: "overview" };
  const [head, arg, ...rest] = parts;
  const value = arg === undefined ? null : decode(arg);
  if (rest.length === 0) {
    if (head === "queues" && value) return { page: "queue", name: value };
    if (head === "tasks" && value) return { page: "task", id: value };
    if (arg === undefined) {
      if (head === "tasks") return { page: "tasks", params };
      if (head === "dead") return { page: "dead", params };
      if (head === "workers") return { page: "workers" };
      if (head === "schedules") return { page: "schedules" };
      if (head === "queues") return { page: "overview" };
    }
  }
  return { page: "notfound", path };
}

const enc = encodeURIComponent;

/** Links to each page; every value is URL-encoded. */
export const href = {
  overview: () => "#/",
  queue: (name: string) => `#/queues/${enc(name)}`,
  task: (id: string) => `#/tasks/${enc(id)}`,
  tasks: (params: Record<string, string | undefined> = {}) => withQuery("#/tasks", params),
  dead: (params: Record<string, string | undefined> = {}) => withQuery("#/dead", params),
  workers: () => "#/workers",
  schedules: () => "#/schedules",
};

function withQuery(base: string, params: Record<string, string | undefined>): string {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) qs.set(k, v);
  const s = qs.toString();
  return s ? `${base}?${s}` : base;
}

/** The current route; re-renders on every hash change. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const update = () => setRoute(parseHash(location.hash));
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}

/** Go to a page (pushes a history entry, like a click on a link). */
export function navigate(to: string): void {
  location.hash = to.replace(/^#/, "");
}
