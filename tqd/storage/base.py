"""The storage contract: durable task state and atomic lifecycle operations.

Every backend (SQLite, Redis) implements the underscored abstract methods;
callers use the public methods, which do the bookkeeping shared by all
backends (argument checks, bulk operations in bounded chunks, fanning change
events out to listeners). Backends raise ``StorageUnavailable`` when the
store does not answer, promptly rather than hanging. Each underscored method is one atomic operation in the store:
either all of it happens or none of it.

Time comes from the caller (``now``, epoch seconds), so tests drive it with a
FakeClock. No method returns a client object of the backend.

Change events: after an operation commits, the backend reports each task
that changed state as a :class:`~tqd.models.Change` (and queue pauses,
resumes and purges as :class:`~tqd.models.QueueChange`) through
``_emit``. Backends shared by several processes also deliver the changes
made by the other processes. The worker pool relies on ``pending`` changes to
wake up without polling.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from tqd.errors import BadRequest, NotFound
from tqd.logs import log_failure
from tqd.models import (
    ALL_QUEUES,
    FINISHED_STATES,
    PROGRESS_MESSAGE_MAX,
    STATES,
    Change,
    Firing,
    Outcome,
    ProgressReport,
    QueueChange,
    QueueInfo,
    QueueLimits,
    StatsBucket,
    Task,
    WorkerInfo,
    valid_name,
)

log = logging.getLogger("tqd.storage")

Listener = Callable[[Sequence[Change | QueueChange]], None]

#: Capabilities a backend may declare (``Storage.capabilities``).
SHARED = "shared"  # several tqd processes may use the store at once
DURABLE_FSYNC = "durable_fsync"  # acknowledged writes reached the disk

#: Bulk operations (purge, redrive, janitor) work in chunks of this many
#: tasks so one call never holds the store for long.
BULK_CHUNK = 2000

#: Resolutions of the statistics (seconds per bucket) and how long the store
#: keeps a bucket of each, in seconds after its start: a little more than
#: the 10 minutes of per-second and 24 hours of per-minute history served.
STATS_KEEP: dict[int, int] = {1: 660, 60: 86400 + 3600}


def _check_visibility(visibility: float | None) -> None:
    # NaN fails both comparisons, so it is refused too.
    if visibility is not None and not 0 < visibility < float("inf"):
        raise ValueError(f"visibility must be a positive number of seconds, got {visibility!r}")


class EnqueueResult(tuple):
    """``(task, created)``: created is False when an idempotency key matched."""

    __slots__ = ()

    def __new__(cls, task: Task, created: bool) -> EnqueueResult:
        return tuple.__new__(cls, (task, created))

    @property
    def task(self) -> Task:
        return self[0]

    @property
    def created(self) -> bool:
        return self[1]


class Leased(list):
    """The tasks one lease handed out (a list, in lease order), and why it
    handed out fewer than asked for when a queue limit cut it short.

    ``limited`` is None when no limit of the queue held tasks back (the queue
    may simply have run out), else which limit did: ``"concurrency"``,
    ``"group"`` (group_concurrency) or ``"rate"``. ``retry_in`` is, for
    ``"rate"``, the seconds until the bucket holds its next token.
    """

    __slots__ = ("limited", "retry_in")

    def __init__(self, tasks=(), limited: str | None = None, retry_in: float | None = None) -> None:
        super().__init__(tasks)
        self.limited = limited
        self.retry_in = retry_in


class Page(tuple):
    """``(tasks, next_cursor)``: next_cursor is None on the last page."""

    __slots__ = ()

    def __new__(cls, tasks: list[Task], next_cursor: str | None) -> Page:
        return tuple.__new__(cls, (tasks, next_cursor))

    @property
    def tasks(self) -> list[Task]:
        return self[0]

    @property
    def next_cursor(self) -> str | None:
        return self[1]


class Storage(ABC):
    """Durable task state shared by the API, the worker pool and the roles."""

    #: Short name of the backend, as in the storage URL scheme.
    kind: str = "abstract"
    #: What this backend offers beyond the contract (see the constants above).
    capabilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    # -- life ---------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema; raise ConfigError when unusable."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending operations and release every resource."""

    @abstractmethod
    async def ping(self) -> None:
        """Return when the store answers; raise StorageUnavailable otherwise."""

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with each batch of changes after it commits.

        Listeners run on the event loop and must not block or raise.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, changes: Sequence[Change | QueueChange]) -> None:
        """Hand committed changes to every listener; a failing listener is logged."""
        if not changes:
            return
        for listener in list(self._listeners):
            try:
                listener(changes)
            except Exception:
                log_failure(log, "a change listener failed")

    # -- producing ----------------------------------------------------------

    async def enqueue(self, tasks: Sequence[Task]) -> list[EnqueueResult]:
        """Store new tasks, all or nothing, and return them in the given order.

        Each task arrives complete (id, state ``pending`` or ``scheduled``
        with ``run_at``, defaults applied). A task may also arrive in any
        other state with its history, as ``tqd migrate`` copies one: it is
        stored exactly as given, counted in its state and indexed by the
        time of that state (``lease_expires_at``, ``finished_at``), and from
        then on behaves as a task that got there by itself. Idempotency keys are unique per
        queue: a task whose ``idempotency_key`` is held by a stored task of
        the same queue is not stored; the stored task is returned with
        ``created=False``. Keys also match within the batch. A task id that
        is already stored raises Conflict and nothing of the batch is stored.

        Unique tasks: a new pending or scheduled task with a ``unique_key`` is
        not stored while a task of the same queue, name and unique key is
        pending, scheduled or processing and its ``unique_until`` is after
        the new task's ``created_at``; that task is returned with
        ``created=False``. A task holds its key from its enqueue until it
        first finishes (a manual retry does not take it again). Unique keys
        also match within the batch; an idempotency key is checked first.
        The call returns only after the tasks are durable.
        """
        if not tasks:
            return []
        return await self._enqueue(tasks)

    @abstractmethod
    async def _enqueue(self, tasks: Sequence[Task]) -> list[EnqueueResult]: ...

    # -- consuming ----------------------------------------------------------

    async def lease(
        self, queue: str, limit: int, worker: str, now: float, visibility: float | None = None
    ) -> Leased:
        """Lease up to ``limit`` pending tasks of ``queue`` to ``worker``.

        Highest priority first, first in first out among equal priorities,
        and the returned list is in that order. Each leased task becomes ``processing`` with a fresh ``lease_token``,
        ``lease_expires_at = now + visibility_timeout``, ``started_at = now``
        and ``worker`` set. ``visibility`` (seconds, > 0) replaces the
        task's visibility timeout for this lease only. A paused queue leases
        nothing.

        The queue's :class:`~tqd.models.QueueLimits` are read and applied in
        the same atomic operation, so they hold across every process: at
        most ``concurrency - processing`` tasks, at most as many as the rate
        bucket holds whole tokens (refilled up to ``now``; one token taken
        per task), and no group past ``group_concurrency`` processing.

        Fair groups: when the queue holds pending tasks with a ``group``,
        the lease goes round in turns instead of strict priority order. Each
        turn visits every group that has pending tasks and room under
        ``group_concurrency``, in the order of the group names, with the
        tasks without a group as one more group named ``""`` (first in that
        order); it takes each group's next task (priority, then FIFO, within
        the group). The rotation goes on after the last group served by the
        previous lease of the queue, whichever process made it (the store
        keeps where it stopped). So a group with a burst of many tasks gets
        one task per turn like every other group.

        The result says which limit, if any, cut the lease short (see
        :class:`Leased`); callers wait for that limit instead of taking the
        queue for empty.
        """
        if limit <= 0:
            return Leased()
        _check_visibility(visibility)
        return await self._lease(queue, limit, worker, now, visibility)

    @abstractmethod
    async def _lease(
        self, queue: str, limit: int, worker: str, now: float, visibility: float | None
    ) -> Leased: ...

    async def extend(
        self, leases: Sequence[tuple[str, str]], now: float, visibility: float | None = None
    ) -> list[bool]:
        """Extend leases ``(task_id, token)`` to ``now + visibility_timeout``
        (or ``now + visibility`` when given, for this extension only).

        Returns, in order, whether each lease was still held; a False means
        the task was cancelled, reclaimed or deleted and its handler should
        stop.
        """
        if not leases:
            return []
        _check_visibility(visibility)
        return await self._extend(leases, now, visibility)

    @abstractmethod
    async def _extend(
        self, leases: Sequence[tuple[str, str]], now: float, visibility: float | None
    ) -> list[bool]: ...

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Record how leased tasks ended, each only if its token still holds.

        ``complete`` → ``completed`` with the result; ``fail`` with
        ``retry_at`` → ``scheduled`` at that time, without → ``failed``;
        both count the attempt and append the error to the history.
        ``release`` → ``pending`` at once, the attempt not counted. Returns,
        in order, whether each outcome was accepted; a stale token changes
        nothing (fencing).
        """
        if not outcomes:
            return []
        for outcome in outcomes:
            if outcome.kind not in ("complete", "fail", "release"):
                raise ValueError(f"unknown outcome kind {outcome.kind!r}")
        return await self._settle(outcomes, now)

    @abstractmethod
    async def _settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]: ...

    async def report_progress(self, reports: Sequence[ProgressReport]) -> list[bool]:
        """Store each report as its task's latest ``progress``, only if its
        lease token still holds (fencing).

        Returns, in order, whether each report was stored; a stale token or
        a missing task changes nothing. Progress is not a change of state:
        no change event is emitted. A fraction outside [0, 1] raises
        ValueError; a message longer than PROGRESS_MESSAGE_MAX is cut.
        """
        if not reports:
            return []
        checked = []
        for r in reports:
            if not 0.0 <= r.fraction <= 1.0:  # also refuses NaN
                raise ValueError(f"progress fraction must be within [0, 1], got {r.fraction!r}")
            if len(r.message) > PROGRESS_MESSAGE_MAX:
                r = ProgressReport(r.task_id, r.token, r.fraction, r.message[:PROGRESS_MESSAGE_MAX], r.at)
            checked.append(r)
        return await self._report_progress(checked)

    @abstractmethod
    async def _report_progress(self, reports: Sequence[ProgressReport]) -> list[bool]: ...

    # -- background roles ---------------------------------------------------

    async def reclaim_expired(self, now: float, limit: int = BULK_CHUNK) -> list[Task]:
        """Take back up to ``limit`` tasks whose lease expired before ``now``.

        The lost attempt counts: a task with attempts left becomes
        ``pending``; one that used its last attempt becomes ``failed`` with
        a ``lost`` error, so a task that kills its worker cannot loop forever.
        Returns the tasks as they now are. Safe when several processes race.
        """
        return await self._reclaim_expired(now, limit)

    @abstractmethod
    async def _reclaim_expired(self, now: float, limit: int) -> list[Task]: ...

    async def reclaim_worker(self, worker: str, now: float) -> list[Task]:
        """Take back every task leased to ``worker``, as reclaim_expired does.

        For a worker known to be gone (this process after a crash, on a store
        only it uses), without waiting for the leases to run out.
        """
        return await self._reclaim_worker(worker, now)

    @abstractmethod
    async def _reclaim_worker(self, worker: str, now: float) -> list[Task]: ...

    async def reclaim_orphans(self, now: float) -> list[Task]:
        """Take back every processing task, as reclaim_expired does.

        Only for a store that a single process uses (no ``SHARED``
        capability): when that process starts, every lease in the store was
        held by a predecessor that is gone, so there is no reason to wait for
        the leases to run out. Shared stores raise NotImplementedError.
        """
        if SHARED in self.capabilities:
            raise NotImplementedError("a shared store cannot know that a lease is orphaned")
        return await self._reclaim_orphans(now)

    async def _reclaim_orphans(self, now: float) -> list[Task]:
        raise NotImplementedError

    async def promote_due(self, now: float, limit: int = BULK_CHUNK) -> int:
        """Make up to ``limit`` scheduled tasks with ``run_at <= now`` pending."""
        return await self._promote_due(now, limit)

    @abstractmethod
    async def _promote_due(self, now: float, limit: int) -> int: ...

    @abstractmethod
    async def next_run_at(self) -> float | None:
        """The earliest ``run_at`` among scheduled tasks, or None."""

    async def expire_finished(self, state: str, before: float, limit: int = BULK_CHUNK) -> int:
        """Delete up to ``limit`` tasks in finished ``state`` that finished before ``before``."""
        if state not in FINISHED_STATES:
            raise ValueError(f"{state!r} is not a finished state")
        return await self._expire_finished(state, before, limit)

    @abstractmethod
    async def _expire_finished(self, state: str, before: float, limit: int) -> int: ...

    async def claim_firing(self, schedule: str, instant: float, now: float) -> bool:
        """Record that cron schedule ``schedule`` fires for ``instant`` (epoch
        seconds), unless an instant at or after it is already recorded.

        One atomic compare-and-set on the schedule's last fired instant: of
        any number of callers (in any number of processes) claiming the same
        instant, exactly one gets True and then enqueues the task. ``now``
        is kept as the time it fired. Records survive restarts.
        """
        if not valid_name(schedule):
            raise ValueError(f"invalid schedule name {schedule!r}")
        return await self._claim_firing(schedule, instant, now)

    @abstractmethod
    async def _claim_firing(self, schedule: str, instant: float, now: float) -> bool: ...

    @abstractmethod
    async def firings(self) -> dict[str, Firing]:
        """The last recorded firing of every schedule that ever fired, by name."""

    # -- reading ------------------------------------------------------------

    @abstractmethod
    async def get(self, task_id: str) -> Task | None:
        """The task with this id, or None."""

    async def list(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """A page of tasks, newest first, filtered by any of state, queue, name.

        ``cursor`` is the ``next_cursor`` of the previous page; a malformed
        cursor raises BadRequest. Cost grows with the page, not with the
        number of stored tasks, for each single filter and for queue+state.
        """
        if state is not None and state not in STATES:
            raise BadRequest(f"state: must be one of {', '.join(STATES)}")
        return await self._list(state, queue, name, max(1, limit), cursor)

    @abstractmethod
    async def _list(
        self, state: str | None, queue: str | None, name: str | None, limit: int, cursor: str | None
    ) -> Page: ...

    # -- changing one task --------------------------------------------------

    async def cancel(self, task_id: str, now: float) -> Task:
        """Cancel a pending, scheduled or processing task and return it.

        A processing task's lease is revoked at once: its worker's settle is
        refused and the worker stops the handler when it learns of it.
        Raises NotFound, or Conflict for a finished task.
        """
        return await self._cancel(task_id, now)

    @abstractmethod
    async def _cancel(self, task_id: str, now: float) -> Task: ...

    async def retry(self, task_id: str, now: float) -> Task:
        """Put a failed or cancelled task back to pending, granting its attempt
        budget again (``max_attempts = attempts + attempt_budget``).

        Raises NotFound, or Conflict in any other state.
        """
        return await self._retry(task_id, now)

    @abstractmethod
    async def _retry(self, task_id: str, now: float) -> Task: ...

    async def delete(self, task_id: str) -> None:
        """Delete a task that is not processing. Raises NotFound or Conflict."""
        await self._delete(task_id)

    @abstractmethod
    async def _delete(self, task_id: str) -> None: ...

    # -- queues -------------------------------------------------------------

    @abstractmethod
    async def declare_queues(self, names: Sequence[str]) -> None:
        """Make these queues exist (with zero counts) if they do not."""

    @abstractmethod
    async def queues(self) -> list[QueueInfo]:
        """Every known queue with its counts per state, sorted by name.

        Counts are kept up to date by each operation; this never scans tasks.
        """

    async def queue(self, name: str) -> QueueInfo:
        """One queue; raises NotFound when it was never named."""
        info = await self._queue(name)
        if info is None:
            raise NotFound(f"no queue named {name!r}")
        return info

    @abstractmethod
    async def _queue(self, name: str) -> QueueInfo | None: ...

    async def set_paused(self, name: str, paused: bool) -> QueueInfo:
        """Pause or resume a queue (creating it if needed) and return it."""
        await self._set_paused(name, paused)
        return await self.queue(name)

    @abstractmethod
    async def _set_paused(self, name: str, paused: bool) -> None: ...

    @abstractmethod
    async def paused_queues(self) -> set[str]:
        """Names of the paused queues."""

    async def set_limits(
        self, name: str, limits: QueueLimits, now: float, config_digest: str | None = None,
        expected: QueueLimits | None = None,
    ) -> QueueInfo:
        """Replace the limits of queue ``name`` (creating it if needed) and
        return it; BadRequest naming the field when a limit is invalid.

        Takes effect from the next lease of every process. The rate bucket
        starts full again (holding ``limits.burst`` tokens at ``now``).
        ``config_digest``, when given, is stored as the queue's
        ``config_digest`` (the config settings these limits came from); None
        keeps the stored one. Emits ``QueueChange(name, "limits")``.

        ``expected`` makes it a compare-and-set: the limits are replaced only
        if the stored ones (``NO_LIMITS`` for a queue never named) equal it,
        checked in the same atomic step as the write; otherwise nothing
        changes and ``LimitsChanged`` is raised. A caller that merges a
        partial update into what it read uses it so that two concurrent
        updates of different fields do not lose one.
        """
        problems = limits.problems()
        if problems:
            raise BadRequest("; ".join(problems))
        await self._set_limits(name, limits, now, config_digest, expected)
        return await self.queue(name)

    @abstractmethod
    async def _set_limits(
        self, name: str, limits: QueueLimits, now: float, config_digest: str | None,
        expected: QueueLimits | None,
    ) -> None: ...

    async def purge(self, queue: str, state: str) -> int:
        """Delete every task of ``queue`` in ``state`` (not processing); return how many."""
        if state not in STATES or state == "processing":
            allowed = ", ".join(s for s in STATES if s != "processing")
            raise BadRequest(f"state: must be one of {allowed}")
        total = 0
        while True:
            n = await self._purge(queue, state, BULK_CHUNK)
            total += n
            if n < BULK_CHUNK:
                return total

    @abstractmethod
    async def _purge(self, queue: str, state: str, limit: int) -> int: ...

    async def redrive(self, queue: str, now: float) -> int:
        """Put every failed task of ``queue`` back to pending, as retry does."""
        total = 0
        while True:
            n = await self._redrive(queue, now, BULK_CHUNK)
            total += n
            if n < BULK_CHUNK:
                return total

    @abstractmethod
    async def _redrive(self, queue: str, now: float, limit: int) -> int: ...

    # -- processes ----------------------------------------------------------

    @abstractmethod
    async def register_worker(self, info: WorkerInfo, ttl: float, now: float) -> None:
        """Record (or refresh) a live process; it disappears ``ttl`` s after its last refresh."""

    @abstractmethod
    async def unregister_worker(self, worker_id: str) -> None:
        """Forget a process that is stopping."""

    @abstractmethod
    async def workers(self, now: float) -> list[WorkerInfo]:
        """Every process whose registration has not expired at ``now``."""

    # -- statistics ---------------------------------------------------------

    async def record_stats(self, buckets: Sequence[StatsBucket], now: float) -> None:
        """Add per-second counts to the statistics kept in the store.

        Each bucket's counts and latency histogram are added to the
        per-second bucket of its second and the per-minute bucket of its
        minute, summed with what every other process added (so each process
        records only its own work). A bucket older than its retention
        (:data:`STATS_KEEP`) at ``now`` is dropped; the store deletes old
        buckets by itself, so the statistics stay bounded in size.
        """
        for b in buckets:
            if b.queue != ALL_QUEUES and not valid_name(b.queue):
                raise ValueError(f"not a queue name: {b.queue!r}")
        if buckets:
            await self._record_stats(buckets, now)

    @abstractmethod
    async def _record_stats(self, buckets: Sequence[StatsBucket], now: float) -> None: ...

    async def stats(
        self, step: int, since: int, until: int, queue: str = ALL_QUEUES
    ) -> list[StatsBucket]:
        """The buckets of ``queue`` at resolution ``step`` (1 or 60) that start
        within ``[since, until]``, oldest first; a bucket in which nothing was
        recorded is left out. Never older than the retention before ``until``.
        """
        if step not in STATS_KEEP:
            raise ValueError(f"no statistics at a resolution of {step}s")
        since = max(since, until - STATS_KEEP[step] + step)
        since -= since % step
        if since > until:
            return []
        return await self._stats(step, since, until, queue)

    @abstractmethod
    async def _stats(self, step: int, since: int, until: int, queue: str) -> list[StatsBucket]: ...
