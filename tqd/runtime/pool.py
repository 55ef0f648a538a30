"""The worker pool: lease in batches, run each task in a coroutine, settle in batches.

One lease loop fills free slots: it leases from the served queues that may
have work, as many tasks as there are free slots (bounded per queue and per
round trip). It never polls. It learns of new work from the store's change
events (a ``pending`` change names the queue) and of free slots from
finishing tasks; when neither has happened it sleeps on one event.

A per-queue generation counter closes the race between "the lease came back
short, so the queue is empty" and "a task was enqueued meanwhile": a queue is
marked idle only if no ``pending`` change arrived for it since the lease was
sent.

Queue limits (concurrency, rate, group_concurrency) are kept and enforced by
the store, across every process; the pool only avoids asking in vain. A
lease cut short by a limit (``Leased.limited``) does not mark the queue
idle:

- ``"rate"``: the queue is held until the bucket has its next token
  (``Leased.retry_in``).
- ``"concurrency"`` or ``"group"``: the queue is parked until a change shows
  one of its tasks leaving ``processing`` (from any process: the store
  reports every process's changes), or for ``"group"`` a new pending task
  (it may belong to another group), with a re-check after
  ``PARK_RECHECK`` seconds in case that change was missed. The same two
  counters close the race with changes that arrive while the lease is out.
- A ``limits`` change of the queue (its limits were edited) ends a hold or
  a parking at once.

Dispatch, when several queues have work and there are fewer free slots than
they would take (``[worker] dispatch``), is ``"weighted"`` (by ``[queues.NAME]
weight``, with credit carried between rounds) or ``"strict"`` (in the order
of ``[worker] queues``); the arithmetic is in ``tqd/runtime/dispatch.py``.

Finished tasks queue their outcome; one settle loop writes everything that
has queued up in one call, so settling costs one round trip per batch and
waits for nothing when the load is light. If the store is unavailable the
outcomes are kept and written when it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from tqd.clock import Clock
from tqd.errors import TqdError
from tqd.models import Change, Outcome, QueueChange, Task, make_error
from tqd.runtime.catalog import Catalog
from tqd.runtime.dispatch import WeightedShares, strict_order
from tqd.runtime.handlers import HandlerSet, RawJSON, TaskContext, TaskFailed
from tqd.runtime.progress import ProgressWriter
from tqd.storage.base import Leased, Storage

log = logging.getLogger("tqd.pool")

#: Seconds after which a queue parked at its concurrency or group limit is
#: leased from again even if no change said that one of its tasks ended.
PARK_RECHECK = 1.0

# Why a running handler was cancelled by the pool.
SHUTDOWN = "shutdown"  # the daemon stops: hand the task back
LOST = "lost"  # the lease is gone (reclaimed, deleted): nothing to settle
CANCELLED = "cancelled"  # cancelled through the API: nothing to settle


@dataclass(slots=True, eq=False)
class Running:
    """A task whose handler runs in this process."""

    task: Task
    job: asyncio.Task | None = None
    stop_reason: str | None = None
    #: When the heartbeat should extend the lease next (epoch seconds).
    extend_at: float = 0.0
    #: The handlers in use when it started; it keeps them across a reload.
    handlers: HandlerSet | None = None


class TaskObserver(Protocol):
    """Learns when the pool starts and finishes a task (for metrics)."""

    def task_started(self, task: Task, now: float) -> None: ...

    def task_finished(self, task: Task, now: float) -> None: ...


@dataclass(slots=True)
class PoolSettings:
    """How the pool behaves; built from ``[worker]`` and ``[queues.*]``."""

    worker_id: str
    concurrency: int = 100
    #: Queues to serve; empty means every queue.
    queues: Sequence[str] = ()
    #: Queues never served here (remote workers lease their tasks).
    exclude: frozenset[str] = frozenset()
    #: Each queue's share of the free slots under "weighted" dispatch
    #: (a queue not named here weighs 1).
    weights: dict[str, int] = field(default_factory=dict)
    #: "weighted" or "strict" (see the module docstring).
    dispatch: str = "weighted"
    lease_batch: int = 200


class WorkerPool:
    """Runs tasks leased from the store with a bounded number of coroutines."""

    def __init__(
        self,
        storage: Storage,
        catalog: Catalog,
        handlers: HandlerSet,
        settings: PoolSettings,
        clock: Clock,
        progress: ProgressWriter | None = None,
    ) -> None:
        """``progress`` writes the handlers' progress reports; without one the
        pool runs its own."""
        self._storage = storage
        self._catalog = catalog
        self._handlers = handlers
        self.settings = settings
        self._clock = clock
        self._served = frozenset(settings.queues)
        self.running: dict[str, Running] = {}
        self._active: set[str] = set()
        # Paused queues, as the change events report them: an enqueue into a
        # paused queue must not cost a lease round trip. (The store still
        # checks the flag in the lease itself; this only saves work.)
        self._paused: set[str] = set()
        self._gen: dict[str, int] = {}
        #: Per queue, how many of its tasks left ``processing`` (changes seen)
        #: and how often its limits were edited: the races of parking and
        #: holding against changes that arrive while a lease is out.
        self._exits: dict[str, int] = {}
        self._edits: dict[str, int] = {}
        #: Queues parked at a concurrency or group limit: why, with the
        #: fallback timer that leases again after PARK_RECHECK.
        self._parked: dict[str, tuple[str, asyncio.TimerHandle]] = {}
        #: Weighted dispatch: the shares of each round, with their credit.
        self._shares = WeightedShares()
        self._wake = asyncio.Event()
        self._stopping = False
        self._outcomes: list[Outcome] = []
        self._settle_wake = asyncio.Event()
        self._settles_closed = False
        self._lease_job: asyncio.Task | None = None
        self._settle_job: asyncio.Task | None = None
        self._checks: set[asyncio.Task] = set()  # lease checks in flight (_check_lease)
        self.counters = {"started": 0, "completed": 0, "failed": 0, "retried": 0}
        #: The loop and its thread, once started (where progress is delivered).
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        self._own_progress = progress is None
        self.progress = progress or ProgressWriter(storage, clock)
        #: Queues whose dispatch is held, with the loop time the hold ends.
        self._held: dict[str, float] = {}
        #: Told when a task starts and ends (the daemon's Meter), or None.
        self.observer: TaskObserver | None = None

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id

    def serves(self, queue: str) -> bool:
        """Whether this pool takes tasks from ``queue``."""
        if queue in self.settings.exclude:
            return False
        return not self._served or queue in self._served

    # -- life ---------------------------------------------------------------

    async def start(self) -> None:
        """Begin leasing: every served queue with pending tasks is active."""
        self._storage.add_listener(self._on_changes)
        # Where handlers' progress reports are delivered (ProgressSink).
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        if self._own_progress:
            self.progress.start()
        for info in await self._storage.queues():
            if info.paused:
                self._paused.add(info.name)
            if info.counts.get("pending") and self.serves(info.name):
                self._active.add(info.name)
        for name in self._served:
            if self.serves(name):
                self._active.add(name)
        self._lease_job = asyncio.create_task(self._lease_loop(), name="tqd-lease-loop")
        self._settle_job = asyncio.create_task(self._settle_loop(), name="tqd-settle-loop")

    async def stop(self, grace: float) -> int:
        """Stop leasing, let running tasks finish within ``grace`` seconds, hand
        back the leases of the rest, write every outcome. Returns how many
        tasks were handed back."""
        self._stopping = True
        self._wake.set()
        for _, timer in self._parked.values():
            timer.cancel()
        if self._lease_job is not None:
            await self._lease_job
        handed_back = 0
        jobs = [r.job for r in self.running.values() if r.job is not None]
        if jobs:
            log.info("waiting up to %.1fs for %d running tasks", grace, len(jobs))
            await asyncio.wait(jobs, timeout=grace)
        for running in list(self.running.values()):
            if running.job is not None and not running.job.done():
                running.stop_reason = SHUTDOWN
                running.job.cancel()
                handed_back += 1
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        self._settles_closed = True
        self._settle_wake.set()
        if self._settle_job is not None:
            try:
                await asyncio.wait_for(self._settle_job, timeout=max(5.0, grace))
            except TimeoutError:
                log.error("could not write %d outcomes before exit; their leases will expire",
                          len(self._outcomes))
        if self._own_progress:
            await self.progress.close()
        self._storage.remove_listener(self._on_changes)
        return handed_back

    async def apply(self, catalog: Catalog, handlers: HandlerSet, settings: PoolSettings) -> None:
        """Use a reloaded configuration from the next lease on.

        Running tasks keep the handler they started with (see ``jobs_using``);
        a lower concurrency only stops new leases until enough tasks finish;
        queues no longer served stop being leased from; new weights and
        dispatch apply from the next lease round.
        """
        if settings.worker_id != self.worker_id:
            raise ValueError("a reload cannot change the worker id")
        self._catalog = catalog
        self._handlers = handlers
        self.settings = settings
        self._served = frozenset(settings.queues)
        self._active = {q for q in self._active if self.serves(q)} | set(self._served)
        self._shares.reset()
        if not self._stopping:
            for info in await self._storage.queues():
                if info.paused:
                    self._paused.add(info.name)
                if info.counts.get("pending") and self.serves(info.name):
                    self._active.add(info.name)
        self._wake.set()

    def jobs_using(self, handlers: HandlerSet) -> list[asyncio.Task]:
        """The jobs of running tasks that started with ``handlers`` (to close them after)."""
        return [r.job for r in self.running.values() if r.handlers is handlers and r.job is not None]

    # -- learning of work ---------------------------------------------------

    def _on_changes(self, changes: Sequence[Change | QueueChange]) -> None:
        wake = False
        running = self.running
        for c in changes:
            if type(c) is Change:
                state = c.state
                if state == "pending":
                    q = c.queue
                    if self.serves(q) and q not in self._paused:
                        self._gen[q] = self._gen.get(q, 0) + 1
                        # A queue parked at its limit stays parked unless
                        # this change may have made room.
                        if q not in self._parked or self._unpark_on_pending(c):
                            self._active.add(q)
                            wake = True
                elif state != "processing":
                    # A task left processing (or a pending one went away):
                    # a slot under the queue's limits may be free.
                    self._exits[c.queue] = self._exits.get(c.queue, 0) + 1
                    if self._parked and self._unpark(c.queue):
                        wake = True
                if state != "processing" and c.id in running:
                    if c.state == "pending":
                        # A reclaim, or the late echo of the task's own
                        # enqueue: a shared store answers the lease and
                        # reports the enqueue on different connections, in
                        # either order. The lease token tells them apart.
                        self._check_lease(running[c.id])
                    else:
                        # Someone else ended this task's lease (cancelled
                        # it, deleted it): stop the handler.
                        self._interrupt(running[c.id], CANCELLED if c.state == "cancelled" else LOST)
            elif type(c) is QueueChange:
                if c.event == "paused":
                    self._paused.add(c.queue)
                elif c.event == "resumed":
                    self._paused.discard(c.queue)
                    if self.serves(c.queue):
                        self._gen[c.queue] = self._gen.get(c.queue, 0) + 1
                        self._active.add(c.queue)
                        wake = True
                elif c.event == "limits":
                    # New limits: whatever held the queue back may be gone.
                    self._edits[c.queue] = self._edits.get(c.queue, 0) + 1
                    self._unpark(c.queue)
                    self._held.pop(c.queue, None)
                    if self.serves(c.queue):
                        self._gen[c.queue] = self._gen.get(c.queue, 0) + 1
                        self._active.add(c.queue)
                        wake = True
        if wake:
            self._wake.set()

    def _check_lease(self, running: Running) -> None:
        """Stop ``running`` if the store no longer holds its lease (checked
        in the background; a store that does not answer leaves it to the
        heartbeat)."""

        async def check() -> None:
            try:
                stored = await self._storage.get(running.task.id)
            except Exception:
                return
            if stored is None or stored.lease_token != running.task.lease_token:
                self._interrupt(running, LOST)

        job = asyncio.get_running_loop().create_task(check())
        self._checks.add(job)
        job.add_done_callback(self._checks.discard)

    def _interrupt(self, running: Running, reason: str) -> None:
        if running.stop_reason is None and running.job is not None:
            running.stop_reason = reason
            running.job.cancel()

    def lose(self, task_ids: Iterable[str]) -> None:
        """The leases of these tasks are gone: stop their handlers, settle nothing."""
        for tid in task_ids:
            running = self.running.get(tid)
            if running is not None:
                self._interrupt(running, LOST)

    def hold(self, queue: str, seconds: float) -> None:
        """Lease nothing from ``queue`` for ``seconds`` (a handler's target is
        pushing back, or the queue's rate limit has no token left); a longer
        hold already in place stays."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        if until <= self._held.get(queue, 0.0):
            return
        self._held[queue] = until
        loop.call_at(until, self._release_hold, queue, until)

    def _release_hold(self, queue: str, until: float) -> None:
        if self._held.get(queue) == until:
            del self._held[queue]
            self._active.add(queue)
            self._wake.set()

    def _park(self, queue: str, why: str) -> None:
        """Lease nothing from ``queue`` until a change may have freed room
        under its ``why`` limit (or PARK_RECHECK seconds pass)."""
        self._unpark(queue)
        self._active.discard(queue)
        self._shares.forget(queue)
        timer = asyncio.get_running_loop().call_later(PARK_RECHECK, self._recheck, queue)
        self._parked[queue] = (why, timer)

    def _unpark(self, queue: str) -> bool:
        """End the parking of ``queue``, if any; True if it was parked."""
        parked = self._parked.pop(queue, None)
        if parked is None:
            return False
        parked[1].cancel()
        if self.serves(queue):
            self._active.add(queue)
        return True

    def _unpark_on_pending(self, change: Change) -> bool:
        """Unpark the queue of a pending ``change`` if the change may have
        made room: a new task may be of a group under its limit; a reclaim
        frees a concurrency slot (a reclaim by another process is not told
        apart from an enqueue: PARK_RECHECK covers it). True if unparked."""
        parked = self._parked.get(change.queue)
        if parked is not None and (parked[0] == "group" or change.op == "reclaim"):
            return self._unpark(change.queue)
        return False

    def _recheck(self, queue: str) -> None:
        if self._unpark(queue):
            self._wake.set()

    # -- leasing ------------------------------------------------------------

    async def _lease_loop(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                progressed = await self._lease_round()
            except Exception as err:
                failures += 1
                delay = min(2.0, 0.05 * 2 ** min(failures, 6))
                if failures == 1 or failures % 20 == 0:
                    log.warning("leasing failed (%s); retrying in %.2fs", _describe(err), delay)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                except TimeoutError:
                    pass
                continue
            if failures:
                log.info("leasing works again after %d failures", failures)
                failures = 0
            if not progressed:
                await self._wake.wait()

    def _contenders(self) -> list[str]:
        """The queues that may have a task to lease now, in dispatch order."""
        active = self._active
        if self._held or self._paused:
            held, paused = self._held, self._paused
            active = {q for q in active if q not in held and q not in paused}
        if self.settings.dispatch == "strict":
            return strict_order(active, self.settings.queues)
        return sorted(active)

    async def _lease_round(self) -> bool:
        """Lease for the free slots once; True if anything happened that calls
        for another round at once (tasks started, a queue found idle, held or
        parked), False if the loop should wait for news."""
        free = self.settings.concurrency - len(self.running)
        if free <= 0 or not self._active:
            return False
        queues = self._contenders()
        if not queues:
            return False
        if self.settings.dispatch == "strict":
            return await self._lease_strict(queues, free)
        return await self._lease_weighted(queues, free)

    async def _lease_weighted(self, queues: list[str], free: int) -> bool:
        if len(queues) == 1:
            # One queue: nothing to share (the common case; no arithmetic).
            q = queues[0]
            plan = [(q, min(free, self.settings.lease_batch))]
        else:
            plan = self._shares.split(queues, free, self.settings.weights,
                                      self.settings.lease_batch)
        marks = [(q, n, self._gen.get(q, 0), self._exits.get(q, 0), self._edits.get(q, 0))
                 for q, n in plan]
        now = self._clock.now()
        worker = self.worker_id
        if len(plan) == 1:
            results: list = [await self._storage.lease(plan[0][0], plan[0][1], worker, now)]
        else:
            # return_exceptions: tasks that one queue's lease handed out must
            # run even if another queue's lease failed; otherwise they would
            # sit leased to nobody until their leases ran out.
            results = await asyncio.gather(
                *(self._storage.lease(q, n, worker, now) for q, n in plan),
                return_exceptions=True,
            )
        progressed = False
        failure: BaseException | None = None
        for mark, tasks in zip(marks, results, strict=True):
            if isinstance(tasks, BaseException):
                failure = failure or tasks
                continue
            if self._take(mark, tasks, now):
                progressed = True
        if failure is not None:
            raise failure
        return progressed

    async def _lease_strict(self, queues: list[str], free: int) -> bool:
        progressed = False
        worker = self.worker_id
        batch = self.settings.lease_batch
        for q in queues:
            n = min(free, batch)
            mark = (q, n, self._gen.get(q, 0), self._exits.get(q, 0), self._edits.get(q, 0))
            now = self._clock.now()
            tasks = await self._storage.lease(q, n, worker, now)
            if self._take(mark, tasks, now):
                progressed = True
            free -= len(tasks)
            # A later queue gets slots only when this one leased fewer than
            # asked; a full lease leaves the rest to the next round (this
            # queue again first).
            if len(tasks) == n or free <= 0 or self._stopping:
                break
        return progressed

    def _take(self, mark: tuple[str, int, int, int, int], tasks: Leased, now: float) -> bool:
        """Start what one lease of ``mark = (queue, asked, gen, exits, edits)``
        handed out; when it came back short, decide why and whether to lease
        from the queue again. True if the lease loop should go round again."""
        queue, asked, gen, exits, edits = mark
        progressed = False
        if tasks:
            progressed = True
            if self._stopping:
                self._hand_back(tasks)
            else:
                for task in tasks:
                    self._start(task, now)
        if len(tasks) < asked:
            limited = tasks.limited
            if limited is None:
                # Empty, unless a task was enqueued while the lease was out.
                if self._gen.get(queue, 0) == gen:
                    self._active.discard(queue)
                    self._shares.forget(queue)
                    progressed = True
            elif self._edits.get(queue, 0) != edits:
                progressed = True  # the limits changed meanwhile: lease again at once
            elif limited == "rate":
                retry_in = tasks.retry_in
                self.hold(queue, 0.1 if retry_in is None else max(0.001, retry_in))
                self._shares.forget(queue)
                progressed = True
            elif self._exits.get(queue, 0) == exits and (
                limited != "group" or self._gen.get(queue, 0) == gen
            ):
                # At its concurrency (or every pending group at its group
                # limit), and nothing left processing while the lease was out.
                self._park(queue, limited)
                progressed = True
            else:
                progressed = True  # room may have freed meanwhile: ask again
        return progressed

    def _hand_back(self, tasks: list[Task]) -> None:
        for t in tasks:
            self._outcomes.append(_outcome(t, "release"))
        self._settle_wake.set()

    # -- running ------------------------------------------------------------

    def _start(self, task: Task, now: float) -> None:
        stale = self.running.get(task.id)
        if stale is not None:
            # Leased again after its lease was taken back (a stalled heartbeat):
            # the earlier run has nothing left to settle.
            self._interrupt(stale, LOST)
        running = Running(task, extend_at=now + task.visibility_timeout / 3, handlers=self._handlers)
        self.running[task.id] = running
        self.counters["started"] += 1
        if self.observer is not None:
            self.observer.task_started(task, now)
        running.job = asyncio.create_task(self._run(running))

    async def _run(self, running: Running) -> None:
        task = running.task
        outcome: Outcome | None = None
        try:
            outcome = await self._attempt(running)
        finally:
            if self.running.get(task.id) is running:
                del self.running[task.id]
            self._wake.set()
            if outcome is not None:
                self._outcomes.append(outcome)
                self._settle_wake.set()
                if self.observer is not None and outcome.kind != "release":
                    self.observer.task_finished(task, self._clock.now())

    async def _attempt(self, running: Running) -> Outcome | None:
        task = running.task
        handler = (running.handlers or self._handlers).get(task.name)
        if handler is None:
            return self._failure(task, "config", f"no handler for task {task.name!r} in this process")
        ctx = TaskContext(task, self)
        timer = asyncio.timeout(task.timeout) if task.timeout else None
        # started_at becomes the moment the handler is called (the store
        # holds the lease time until the outcome is settled).
        task.started_at = self._clock.now()
        try:
            if timer is None:
                result = await handler.run(ctx)
            else:
                async with timer:
                    result = await handler.run(ctx)
        except asyncio.CancelledError:
            reason = running.stop_reason
            if reason == SHUTDOWN:
                return _outcome(task, "release")
            if reason in (LOST, CANCELLED):
                return None
            raise
        except TimeoutError as err:
            if timer is not None and timer.expired():
                return self._failure(task, "timeout", f"timed out after {task.timeout:g}s")
            return self._failure(task, "exception", _describe(err))
        except TaskFailed as err:
            if err.hold:
                self.hold(task.queue, err.hold)
            return self._failure(task, err.kind, err.message, retry=err.retry, delay=err.delay)
        except Exception as err:
            return self._failure(task, "exception", _describe(err))
        try:
            encoded = _encode_result(result)
        except TypeError as err:
            return self._failure(task, "result", f"the result is not JSON: {err}", retry=False)
        self.counters["completed"] += 1
        return _outcome(task, "complete", result=encoded)

    def task_progress(self, task: Task, fraction: float, message: str) -> None:
        """A running handler's progress report (see TaskContext.progress)."""
        running = self.running.get(task.id)
        # A handler still reporting after its run was stopped is not heard.
        if running is not None and running.task is task and running.stop_reason is None:
            self.progress.report(task.id, task.lease_token or "", fraction, message)

    def _failure(
        self, task: Task, kind: str, message: str, *, retry: bool = True, delay: float | None = None
    ) -> Outcome:
        now = self._clock.now()
        attempt = task.attempts + 1
        retry_at = None
        if retry and attempt < task.max_attempts:
            if delay is None:
                definition = self._catalog.get(task.name)
                delay = definition.backoff(attempt) if definition else 1.0
            retry_at = now + delay
            self.counters["retried"] += 1
            what = f"retry in {delay:.2f}s"
        else:
            self.counters["failed"] += 1
            what = "no retry left" if retry else "not retryable"
        log.warning(
            "task %s (%s) attempt %d/%d failed (%s): %s",
            task.id, task.name, attempt, task.max_attempts, what, message,
            extra={"task_id": task.id, "queue": task.queue, "task_name": task.name},
        )
        return _outcome(task, "fail", error=make_error(kind, message, attempt, now), retry_at=retry_at)

    # -- settling -----------------------------------------------------------

    async def _settle_loop(self) -> None:
        failures = 0
        while True:
            if not self._outcomes:
                if self._settles_closed:
                    return
                self._settle_wake.clear()
                await self._settle_wake.wait()
                continue
            batch, self._outcomes = self._outcomes, []
            if self.progress.pending_for(o.task_id for o in batch):
                # A handler's last report goes first: after the settle its
                # lease token no longer holds and the report would be refused.
                await self.progress.flush()
            try:
                accepted = await self._storage.settle(batch, self._clock.now())
            except Exception as err:
                self._outcomes[:0] = batch
                failures += 1
                delay = min(2.0, 0.05 * 2 ** min(failures, 6))
                if failures == 1 or failures % 20 == 0:
                    log.warning("settling %d outcomes failed (%s); retrying in %.2fs",
                                len(batch), _describe(err), delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            stale = len(accepted) - sum(accepted)
            if stale:
                log.info("%d outcomes were refused: their leases had been taken back", stale)

    # -- for the heartbeat --------------------------------------------------

    def leases_due(self, now: float) -> list[tuple[str, str]]:
        """``(task_id, token)`` of running tasks whose lease should be extended now."""
        return [
            (tid, r.task.lease_token or "")
            for tid, r in self.running.items()
            if r.extend_at <= now and r.stop_reason is None
        ]

    def leases_extended(self, leases: Sequence[tuple[str, str]], held: Sequence[bool], now: float) -> None:
        """Record the answer to an extend: schedule the next one, stop lost tasks."""
        for (tid, _), ok in zip(leases, held, strict=True):
            running = self.running.get(tid)
            if running is None:
                continue
            if ok:
                running.extend_at = now + running.task.visibility_timeout / 3
            else:
                task = running.task
                log.info("task %s lost its lease; stopping its handler", tid,
                         extra={"task_id": tid, "queue": task.queue, "task_name": task.name})
                self._interrupt(running, LOST)

    def next_extend_at(self) -> float | None:
        """The earliest time a running task's lease needs extending, or None."""
        return min((r.extend_at for r in self.running.values()), default=None)


def _outcome(task: Task, kind: str, **fields: object) -> Outcome:
    return Outcome(
        task_id=task.id, token=task.lease_token or "", kind=kind, queue=task.queue, name=task.name,
        started_at=task.started_at, **fields,  # type: ignore[arg-type]
    )


def _encode_result(result: object) -> bytes:
    if result is None:
        return b"null"
    if type(result) is RawJSON:
        return bytes(result)
    return orjson.dumps(result)


def _describe(err: BaseException) -> str:
    if isinstance(err, TqdError):
        return err.message
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
