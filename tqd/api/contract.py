"""The shapes of API responses and WebSocket messages, as msgspec structs.

They are the source of the response schemas in the OpenAPI document
(openapi.py). The handlers build their responses with render.py for speed;
tests decode rendered responses into these structs (unknown or missing
fields are errors), and Schemathesis checks the live app against the
document, so the three cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from tqd.models import NAME_PATTERN, PRIORITY_MAX, PRIORITY_MIN

State = Literal["pending", "scheduled", "processing", "completed", "failed", "cancelled"]
Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"},
                                        description="RFC 3339, UTC")]
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
Count = Annotated[int, msgspec.Meta(ge=0)]
LimitValue = Annotated[int, msgspec.Meta(ge=1)]


class _Out(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of response shapes: every field listed, nothing else."""


class ErrorDetail(_Out):
    """What went wrong: a stable machine-readable code and a message naming the cause."""

    code: str
    message: str


class Error(_Out):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class TaskError(msgspec.Struct, kw_only=True):
    """One failed attempt (handlers may add fields, such as an exit code)."""

    attempt: Annotated[int, msgspec.Meta(ge=1)]
    kind: str
    message: str
    at: Timestamp | None


class Progress(_Out):
    """The latest progress a task's handler reported, and when."""

    fraction: Annotated[float, msgspec.Meta(ge=0, le=1)]
    message: str
    at: Timestamp


class TaskOut(_Out):
    """A task. ``payload`` and ``result`` are the JSON given and returned;
    ``unique_key`` is set for task names with ``unique_for``; ``progress`` is
    null until the handler reports some; ``group`` is the fairness group
    (a tenant, say) given at enqueue, or null."""

    id: str
    name: Name
    queue: Name
    payload: Any
    priority: Annotated[int, msgspec.Meta(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
    state: State
    attempts: Count
    max_attempts: Count
    result: Any
    error: TaskError | None
    errors: list[TaskError]
    created_at: Timestamp
    run_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    idempotency_key: str | None
    timeout: float | None
    worker: str | None
    unique_key: str | None
    progress: Progress | None
    group: Name | None


class TaskList(_Out):
    """A page of tasks, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    tasks: list[TaskOut]
    next_cursor: str | None


class TaskBatch(_Out):
    """The tasks of a batch, in the order given."""

    tasks: list[TaskOut]


class Counts(_Out):
    """Tasks of a queue in each state."""

    pending: Count
    scheduled: Count
    processing: Count
    completed: Count
    failed: Count
    cancelled: Count


class Limits(_Out):
    """A queue's flow control, held across every process sharing the store
    (null: no such limit). At most ``concurrency`` tasks processing; at most
    ``rate_limit`` tasks started per ``rate_interval`` seconds, with bursts
    of up to ``rate_burst`` (null: ``rate_limit``); at most
    ``group_concurrency`` tasks of one group processing."""

    concurrency: LimitValue | None
    rate_limit: LimitValue | None
    rate_interval: Annotated[float, msgspec.Meta(gt=0, le=86400)]
    rate_burst: LimitValue | None
    group_concurrency: LimitValue | None


class QueueOut(_Out):
    """A queue: whether it is paused, its counts per state and its limits."""

    name: Name
    paused: bool
    counts: Counts
    limits: Limits


class QueueAffected(QueueOut):
    """A queue after a bulk operation, with the number of tasks it affected."""

    affected: Count


class QueueList(_Out):
    """Every known queue, by name."""

    queues: list[QueueOut]


class WorkerOut(_Out):
    """A tqd process sharing the store."""

    id: str
    host: str
    pid: int
    version: str
    started_at: Timestamp
    concurrency: int
    running: list[str]
    last_heartbeat: Timestamp


class WorkerList(_Out):
    """Every live tqd process sharing the store."""

    workers: list[WorkerOut]


class StatsPoint(_Out):
    """Counts of one second or minute; latencies (enqueue to start) in ms, null
    when no task started in it."""

    t: Annotated[int, msgspec.Meta(description="bucket start, epoch seconds")]
    enqueued: Count
    completed: Count
    failed: Count
    latency_p50_ms: float | None
    latency_p99_ms: float | None


class Stats(_Out):
    """Time series for charts: 600 seconds (10m) or 1440 minutes (24h), oldest first."""

    range: Literal["10m", "24h"]
    step: Literal[1, 60]
    queue: Name | None
    series: list[StatsPoint]


class Health(_Out):
    """The process is alive."""

    status: Literal["ok"]


class Ready(_Out):
    """Whether the process can take work; ``reason`` says why not."""

    status: Literal["ready", "draining", "unavailable"]
    storage: str | None = None
    reason: str | None = None


# -- WebSocket messages of /v1/events (server to client unless noted) ---------


class EventHello(_Out):
    """The first message: the queues followed (null: all)."""

    type: Literal["hello"]
    queues: list[Name] | None


class EventTask(_Out):
    """A task changed state (``deleted``: it is gone)."""

    type: Literal["task"]
    id: str
    queue: Name
    name: Name
    state: State | Literal["deleted"]
    at: Timestamp


class EventQueues(_Out):
    """Every queue's counts (as GET /v1/queues), at most once a second, when they changed."""

    type: Literal["queues"]
    queues: list[QueueOut]


class EventLagged(_Out):
    """The client did not keep up: ``dropped`` task messages were left out; fetch again."""

    type: Literal["lagged"]
    dropped: Annotated[int, msgspec.Meta(ge=1)]


class EventError(_Out):
    """A client message that was not understood (the connection stays open)."""

    type: Literal["error"]
    error: ErrorDetail


class EventSubscribe(_Out):
    """Client to server: follow these queues ([]: none), or every queue with null."""

    subscribe: list[Name] | None


class LeaseOut(_Out):
    """A lease: the token every settle must name, and when it runs out."""

    token: str
    expires_at: Timestamp | None


class LeasedTask(TaskOut):
    """A task handed to a remote worker, with its lease."""

    lease: LeaseOut


class LeasedTasks(_Out):
    """The tasks a remote worker leased (maybe none)."""

    tasks: list[LeasedTask]


class HeartbeatOut(_Out):
    """A lease after a heartbeat, with its new deadline."""

    id: str
    lease: LeaseOut


class CompleteOut(_Out):
    """A remote task recorded as completed."""

    id: str
    state: Literal["completed"]


class FailOut(_Out):
    """A remote failure recorded: scheduled again at ``retry_at``, or failed."""

    id: str
    state: Literal["scheduled", "failed"]
    retry_at: Timestamp | None


class SettleResult(_Out):
    """One outcome of a batch settle: accepted (``state``, and ``retry_at``
    for a failure) or refused (``error``: a stale token or an unknown task)."""

    id: str
    ok: bool
    state: Literal["completed", "scheduled", "failed", "pending"] | None = None
    retry_at: Timestamp | None = None
    error: ErrorDetail | None = None


class SettleResults(_Out):
    """The outcomes of a batch settle, in the order given."""

    results: list[SettleResult]


class ProgressReported(_Out):
    """A progress report as a remote worker sent it."""

    fraction: Annotated[float, msgspec.Meta(ge=0, le=1)]
    message: str


class ProgressNoted(_Out):
    """A remote worker's progress report, written."""

    id: str
    progress: ProgressReported


class ScheduleOut(_Out):
    """A cron schedule: its definition (queue and priority resolved from the
    task's when the schedule does not set them), the scheduled instant it
    last fired for and when that was, and when it fires next."""

    name: Name
    cron: str
    timezone: str
    task: Name
    payload: Any
    queue: Name
    priority: Annotated[int, msgspec.Meta(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
    catch_up: bool
    last_instant: Timestamp | None
    last_fired_at: Timestamp | None
    next_fire_at: Timestamp | None


class ScheduleList(_Out):
    """Every configured schedule, by name."""

    schedules: list[ScheduleOut]


RESPONSES: list[type] = [
    Error, TaskOut, TaskList, TaskBatch, QueueOut, QueueAffected, QueueList, WorkerOut,
    WorkerList, Stats, Health, Ready, LeasedTasks, HeartbeatOut, CompleteOut, FailOut,
    SettleResults, ProgressNoted, ScheduleList,
]
EVENTS: list[type] = [EventHello, EventTask, EventQueues, EventLagged, EventError, EventSubscribe]
