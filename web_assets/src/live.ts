// The /v1/events WebSocket: live task changes and queue counts.
//
// One connection for the whole app. Pages say which queues' task events they
// want (`useLiveQueues`); the queue counts arrive regardless. After a dropped
// connection the client reconnects with capped exponential backoff (with
// jitter) and, once the server greets it again, asks every page to refetch
// what it shows, since events were missed meanwhile. `lagged` (the server
// dropped messages for us) triggers the same refetch, at most once every
// LAG_RESYNC_MS: under a sustained burst the server says `lagged` twice a
// second, and refetching every page that often would add load, not news.
import { useEffect } from "preact/hooks";
import { apiUrl, request } from "./api";
import { currentToken, socketProtocols } from "./auth";
import { Signal } from "./signal";
import type { EventMessage, Queue } from "./types";

export type LiveState =
  | { state: "connecting" }
  | { state: "online" }
  | { state: "offline"; retryAt: number; reason: string };

export type TaskEvent = Extract<EventMessage, { type: "task" }>;

/** Whether the live stream is up; the header shows it. */
export const liveState = new Signal<LiveState>({ state: "connecting" });
/** The latest queue list with counts, from the stream or a fetch. */
export const queuesSignal = new Signal<Queue[] | null>(null);

/** Least time between two refetches caused by `lagged`. */
export const LAG_RESYNC_MS = 3000;

/** How long to wait before the refetch a `lagged` asks for: 0 now, else until
 * LAG_RESYNC_MS have passed since the last one. */
export function lagResyncDelay(lastAt: number, now: number): number {
  return Math.max(0, lastAt + LAG_RESYNC_MS - now);
}

/** Delay before reconnect attempt `n` (0-based): 0.5 s doubling to 15 s, ±25 %. */
export function backoff(n: number, random: () => number = Math.random): number {
  const base = Math.min(15000, 500 * 2 ** n);
  return Math.round(base * (0.75 + random() * 0.5));
}

class LiveStream {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: number | undefined;
  private greeted = false;
  private wanted: string[] | null = null;
  private taskListeners = new Set<(e: TaskEvent) => void>();
  private resyncListeners = new Set<() => void>();
  private stopped = true;
  private lagResyncAt = -Infinity;
  private lagTimer: number | undefined;

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** Drop the connection and open a new one (e.g. with a new token). */
  restart(): void {
    this.attempt = 0;
    this.close();
    this.connect();
  }

  private close(): void {
    window.clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onopen = ws.onerror = null;
      ws.close();
    }
  }

  private connect(): void {
    if (this.stopped) return;
    window.clearTimeout(this.timer);
    liveState.value = { state: "connecting" };
    this.greeted = false;
    const url = new URL(apiUrl("/v1/events"));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.wanted && this.wanted.length) url.searchParams.set("queues", this.wanted.join(","));
    let ws: WebSocket;
    try {
      ws = new WebSocket(url.toString(), socketProtocols(currentToken()));
    } catch (err) {
      this.retry(`cannot open the event stream: ${(err as Error).message}`);
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const why = ev.code === 4008 ? "too slow for the event stream" : `connection closed (${ev.code})`;
      // A refusal before the greeting may mean the token is missing or
      // wrong; a REST call finds out and raises the token prompt on 401.
      if (!this.greeted) request("GET", "/v1/queues").catch(() => undefined);
      this.retry(why);
    };
  }

  private retry(reason: string): void {
    const delay = backoff(this.attempt++);
    liveState.value = { state: "offline", retryAt: Date.now() + delay, reason };
    this.timer = window.setTimeout(() => this.connect(), delay);
  }

  private receive(data: unknown): void {
    if (typeof data !== "string") return;
    let msg: EventMessage;
    try {
      msg = JSON.parse(data) as EventMessage;
    } catch {
      return;
    }
    switch (msg.type) {
      case "hello":
        this.greeted = true;
        this.attempt = 0;
        liveState.value = { state: "online" };
        if (this.wanted !== null && this.wanted.length === 0) this.send({ subscribe: [] });
        this.resync();
        break;
      case "task":
        for (const fn of [...this.taskListeners]) fn(msg);
        break;
      case "queues":
        if (Array.isArray(msg.queues)) queuesSignal.value = msg.queues;
        break;
      case "lagged":
        this.resyncAfterLag();
        break;
    }
  }

  private send(msg: unknown): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  private resync(): void {
    for (const fn of [...this.resyncListeners]) fn();
  }

  /** Refetch after a `lagged`, throttled; a late one covers the rest of a burst. */
  private resyncAfterLag(): void {
    if (this.lagTimer !== undefined) return;
    this.lagTimer = window.setTimeout(() => {
      this.lagTimer = undefined;
      this.lagResyncAt = Date.now();
      this.resync();
    }, lagResyncDelay(this.lagResyncAt, Date.now()));
  }

  /** Task events only for these queues (null: all, []: none). */
  subscribe(queues: string[] | null): void {
    const same =
      queues === this.wanted ||
      (queues !== null && this.wanted !== null && queues.join("\n") === this.wanted.join("\n"));
    if (same) return;
    this.wanted = queues;
    if (this.greeted) this.send({ subscribe: queues });
  }

  onTask(fn: (e: TaskEvent) => void): () => void {
    this.taskListeners.add(fn);
    return () => this.taskListeners.delete(fn);
  }

  onResync(fn: () => void): () => void {
    this.resyncListeners.add(fn);
    return () => this.resyncListeners.delete(fn);
  }
}

/** The app's one event stream. */
export const live = new LiveStream();

/** Ask for task events of these queues while the calling page is shown. */
export function useLiveQueues(queues: string[] | null): void {
  const key = queues === null ? null : queues.join("\n");
  useEffect(() => {
    live.subscribe(queues);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
}

/** Call `fn` for each task event while the component is mounted. */
export function useTaskEvents(fn: (e: TaskEvent) => void, deps: unknown[]): void {
  useEffect(() => live.onTask(fn), deps);
}

/** Call `fn` whenever the page should refetch (reconnected, or events lost). */
export function useResync(fn: () => void, deps: unknown[]): void {
  useEffect(() => live.onResync(fn), deps);
}

/**
 * Call `fn` every `ms` while the stream is not online, so pages still
 * change (more slowly) when the event stream is down or not served.
 */
export function useOfflinePoll(fn: () => void, ms: number): void {
  useEffect(() => {
    let timer: number | undefined;
    const sync = (s: LiveState) => {
      window.clearInterval(timer);
      timer = s.state === "online" ? undefined : window.setInterval(fn, ms);
    };
    sync(liveState.value);
    const stop = liveState.subscribe(sync);
    return () => {
      stop();
      window.clearInterval(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [fn, ms]);
}
