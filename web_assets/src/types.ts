// The JSON shapes of tqd's REST API and event stream, as the dashboard reads them.
// Fields that later issues add (limits, progress, schedules) are optional.

export const STATES = ["pending", "scheduled", "processing", "completed", "failed", "cancelled"] as const;
export type State = (typeof STATES)[number];

export interface TaskError {
  attempt?: number;
  kind?: string;
  message?: string;
  at?: string | null;
  [key: string]: unknown;
}

export interface Task {
  id: string;
  name: string;
  queue: string;
  payload: unknown;
  priority: number;
  state: string;
  attempts: number;
  max_attempts: number;
  result: unknown;
  error: TaskError | null;
  errors?: TaskError[];
  created_at: string | null;
  run_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  idempotency_key: string | null;
  timeout?: number | null;
  worker?: string | null;
  /** Issue 8: the latest progress a handler reported. */
  progress?: unknown;
  /** The task's fairness group (limited by the queue's group_concurrency); absent on an older tqd. */
  group?: string | null;
}

export interface TaskPage {
  tasks: Task[];
  next_cursor: string | null;
}

/** A queue's flow control; null means no limit. */
export interface QueueLimits {
  concurrency: number | null;
  rate_limit: number | null;
  /** Seconds that rate_limit tasks may start in. */
  rate_interval: number;
  /** Most tokens the rate bucket holds (null: rate_limit). */
  rate_burst: number | null;
  group_concurrency: number | null;
}

export interface Queue {
  name: string;
  paused: boolean;
  counts: Record<string, number>;
  /** Absent on a tqd from before queue limits; read it through limits.ts `limitsOf`. */
  limits?: Partial<QueueLimits> | null;
  [key: string]: unknown;
}

export interface Worker {
  id: string;
  host: string;
  pid: number;
  version: string;
  started_at: string | null;
  concurrency: number;
  running: string[];
  last_heartbeat: string | null;
}

export interface StatsPoint {
  t: number;
  enqueued: number;
  completed: number;
  failed: number;
  latency_p50_ms: number | null;
  latency_p99_ms: number | null;
}

export interface Stats {
  range: string;
  step: number;
  series: StatsPoint[];
}

export interface Schedule {
  name: string;
  [key: string]: unknown;
}

/** Messages of the /v1/events WebSocket. */
export type EventMessage =
  | { type: "hello"; queues: string[] | null }
  | { type: "task"; id: string; queue: string; name: string; state: string; at: string }
  | { type: "queues"; queues: Queue[] }
  | { type: "lagged"; dropped: number };
