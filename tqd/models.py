"""The task and the small records that travel with it.

Plain data only: no I/O and no reference to a backend. Times are float epoch
seconds (UTC) inside tqd and RFC 3339 at the API edge. Payloads and results
stay encoded JSON (``bytes``) from the API to the store and back, so a task
that nobody reads is never decoded.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import msgspec
import orjson


class TaskState(StrEnum):
    """Where a task is in its life (see DESIGN §2)."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATES: tuple[str, ...] = tuple(s.value for s in TaskState)
FINISHED_STATES = frozenset({"completed", "failed", "cancelled"})
#: A change event with this state means the task no longer exists.
DELETED = "deleted"

PRIORITY_MIN = -100
PRIORITY_MAX = 100
#: Most errors kept per task; older ones are dropped first.
ERROR_HISTORY = 20


class Task(msgspec.Struct):
    """A task as stored: everything the API shows plus its lease.

    ``payload`` and ``result`` are encoded JSON. ``attempts`` counts the
    attempts that have ended (completed, failed, timed out or lost with a
    crashed worker); the running attempt is number ``attempts + 1``.
    ``attempt_budget`` is the max_attempts the task was enqueued with; a
    manual retry grants that many attempts again.

    ``unique_key`` is set for task names with ``unique_for``: while this task
    is pending, scheduled or processing and ``unique_until`` has not passed,
    an enqueue of the same name and key in the same queue returns this task
    instead of storing another. ``progress`` is the latest progress its
    handler reported, as encoded JSON ``{"fraction", "message", "at"}``.

    ``group`` (a name, or None) is the fairness group the task belongs to,
    for example a tenant: see :meth:`tqd.storage.base.Storage.lease`.
    """

    id: str
    name: str
    queue: str
    payload: bytes = b"null"
    priority: int = 0
    state: str = "pending"
    attempts: int = 0
    max_attempts: int = 3
    attempt_budget: int = 3
    created_at: float = 0.0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: bytes | None = None
    errors: list[dict[str, Any]] = msgspec.field(default_factory=list)
    idempotency_key: str | None = None
    timeout: float | None = None
    visibility_timeout: float = 30.0
    worker: str | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    unique_key: str | None = None
    unique_until: float | None = None
    progress: bytes | None = None
    group: str | None = None

    @property
    def error(self) -> dict[str, Any] | None:
        """The last error, or None."""
        return self.errors[-1] if self.errors else None

    @property
    def attempt(self) -> int:
        """The number of the attempt that is running (or would run next)."""
        return self.attempts + 1


class Change(NamedTuple):
    """One task changed state; every process sharing the store may see it.

    ``state`` is the new state, or ``"deleted"``. ``op`` names the storage
    operation of *this* process that made the change (one of :data:`OPS`);
    it is empty for a change made by another process sharing the store. So a
    listener can count the work this process did (metrics) apart from what
    it merely heard of.
    """

    id: str
    queue: str
    name: str
    state: str
    op: str = ""


#: The storage operations a local :class:`Change` can come from.
OPS = frozenset(
    {"enqueue", "lease", "settle", "reclaim", "promote", "expire", "cancel", "retry",
     "delete", "purge", "redrive"}
)


class QueueChange(NamedTuple):
    """A queue was paused or resumed, its limits changed, or its tasks were
    removed in bulk."""

    queue: str
    event: str  # "paused", "resumed", "limits", "purged"


class Outcome(msgspec.Struct, kw_only=True):
    """How one leased task ended, to be settled under its lease token.

    ``kind`` is ``"complete"`` (with ``result``), ``"fail"`` (with
    ``error``; ``retry_at`` set means try again then, None means dead) or
    ``"release"`` (hand the task back at once without counting the attempt;
    used when the daemon shuts down). ``queue`` and ``name`` are the task's
    as the caller knows them from the lease; a backend may use them to skip
    a lookup, and still checks the token. ``started_at``, when given, is when
    the handler actually began; it replaces the lease time in ``started_at``.
    """

    task_id: str
    token: str
    kind: str
    result: bytes | None = None
    error: dict[str, Any] | None = None
    retry_at: float | None = None
    queue: str = ""
    name: str = ""
    started_at: float | None = None


class ProgressReport(msgspec.Struct, frozen=True):
    """A running task's handler says how far it got, under its lease token.

    ``fraction`` is in [0, 1]; ``message`` is short text; ``at`` is when it
    was reported (epoch seconds).
    """

    task_id: str
    token: str
    fraction: float
    message: str = ""
    at: float = 0.0


#: Longest progress message kept; longer ones are cut.
PROGRESS_MESSAGE_MAX = 500


def check_fraction(fraction: object) -> float:
    """A progress ``fraction`` as a float in [0, 1]; ValueError otherwise."""
    if type(fraction) is float and 0.0 <= fraction <= 1.0:
        return fraction  # the usual case, without the checks below
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ValueError(f"progress must be a number from 0 to 1, got {fraction!r}")
    value = float(fraction)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"progress must be a number from 0 to 1, got {fraction!r}")
    return value


def progress_json(report: ProgressReport) -> bytes:
    """A progress report as a task stores and shows it."""
    return orjson.dumps(
        {"fraction": report.fraction, "message": report.message, "at": rfc3339(report.at)}
    )


class Firing(NamedTuple):
    """The last scheduled instant a cron schedule fired for, and when."""

    instant: float
    fired_at: float


class QueueLimits(msgspec.Struct, kw_only=True, frozen=True):
    """Flow control of one queue, kept in the store and applied by its lease.

    Every limit holds across every process sharing the store; None means
    unlimited.

    - ``concurrency``: the most tasks of the queue ``processing`` at once
      (tasks leased by remote pull workers count too).
    - ``rate_limit`` per ``rate_interval`` seconds: a token bucket that holds
      at most ``rate_burst`` tokens (None: ``rate_limit``) and refills at
      ``rate_limit / rate_interval`` tokens per second; each leased task
      takes one token. A new or changed bucket starts full.
    - ``group_concurrency``: the most tasks of one group ``processing`` at
      once (tasks without a group are not capped by it).
    """

    concurrency: int | None = None
    rate_limit: int | None = None
    rate_interval: float = 1.0
    rate_burst: int | None = None
    group_concurrency: int | None = None

    def problems(self) -> list[str]:
        """What is wrong with these limits, one sentence per field (empty: valid)."""
        out = []
        for field in ("concurrency", "rate_limit", "rate_burst", "group_concurrency"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                out.append(f"{field} must be a whole number >= 1 or null, got {value!r}")
        interval = self.rate_interval
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval <= 86400:
            out.append(f"rate_interval must be seconds in (0, 86400], got {interval!r}")
        return out

    @property
    def burst(self) -> int | None:
        """The bucket's capacity: ``rate_burst``, else ``rate_limit``."""
        return self.rate_burst if self.rate_burst is not None else self.rate_limit


#: A queue with no limits.
NO_LIMITS = QueueLimits()


class QueueInfo(msgspec.Struct, kw_only=True):
    """A queue: whether it is paused, its limits, and how many tasks it holds
    per state.

    ``config_digest`` is an opaque string naming the ``[queues.NAME]``
    settings last applied from a config file (None: never), so a restart
    re-applies the file only when the file changed and a change made at
    runtime survives restarts otherwise.
    """

    name: str
    paused: bool = False
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    limits: QueueLimits = NO_LIMITS
    config_digest: str | None = None


class WorkerInfo(msgspec.Struct, kw_only=True):
    """A tqd process that shares the store, as it last reported itself."""

    id: str
    host: str
    pid: int
    version: str
    started_at: float
    concurrency: int
    running: list[str] = msgspec.field(default_factory=list)
    last_heartbeat: float = 0.0


#: What a task or queue name looks like (also the pattern in the OpenAPI document).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


@functools.lru_cache(maxsize=4096)
def valid_name(name: str) -> bool:
    """Whether ``name`` may name a task or a queue: 1 to 128 letters, digits,
    ``.``, ``_`` or ``-``, starting with a letter or digit. Nothing that
    could act as a path, a key separator or a pattern.

    Cached: every task of a batch names its task, often its queue and
    group, and a few names recur (a cache hit costs a third of the match)."""
    return _NAME.fullmatch(name) is not None


def zero_counts() -> dict[str, int]:
    """A counts dict with every state at zero."""
    return dict.fromkeys(STATES, 0)


# Whole seconds already formatted: the timestamps of one response or burst
# share few distinct seconds. Bounded; cleared when full.
_SECONDS: dict[int, str] = {}


def rfc3339(ts: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC string with microseconds, or None."""
    if ts is None:
        return None
    global _last
    last = _last  # one read: another thread may replace it
    if ts == last[0]:
        return last[1]  # the tasks of a batch share their created_at
    text = _rfc3339(ts)
    _last = (ts, text)
    return text


#: The last time rfc3339 formatted, and its text.
_last: tuple[float, str] = (float("nan"), "")


def _rfc3339(ts: float) -> str:
    seconds = int(ts // 1)
    micros = round((ts - seconds) * 1_000_000)
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    text = _SECONDS.get(seconds)
    if text is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        text = _SECONDS[seconds] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{micros:06d}Z"


def make_error(kind: str, message: str, attempt: int, at: float) -> dict[str, Any]:
    """An error record as stored in a task's history.

    ``kind`` says what ended the attempt: ``exception``, ``timeout``,
    ``lost`` (the lease expired with the worker gone), ``cancelled`` or a
    handler-specific word such as ``exit``.
    """
    return {"attempt": attempt, "kind": kind, "message": message[:4000], "at": rfc3339(at)}


#: The ``queue`` of statistics summed over every queue.
ALL_QUEUES = "*"


class StatsBucket(msgspec.Struct, kw_only=True):
    """Task counts of one queue during one bucket of time (a second or a minute).

    ``t`` is the start of the bucket (epoch seconds); ``queue`` is a queue
    name or :data:`ALL_QUEUES`. ``latency`` is a histogram of enqueue-to-start
    latencies (see tqd.histogram): bucket index -> number of tasks started.
    Written per second by each process and summed by the store.
    """

    t: int
    queue: str
    enqueued: int = 0
    completed: int = 0
    failed: int = 0
    latency: dict[int, int] = msgspec.field(default_factory=dict)
