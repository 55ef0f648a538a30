"""The worker pool on a real SQLite store with real handlers: builtin ones and
the python handlers of ``pymods/tqd_pool_probe.py``, loaded through
``python_path`` as a user's would be. The handlers measure what happens to
them; the tests read those measurements and the store."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers.aio import until
from tests.runtime.kit import Blocker, pool_with
from tests.storage.helpers import TaskMaker
from tqd.clock import FakeClock, SystemClock
from tqd.config import load_config
from tqd.models import QueueLimits, Task
from tqd.runtime.catalog import Catalog, NewTask
from tqd.runtime.handlers import build_handlers
from tqd.runtime.pool import PoolSettings, WorkerPool
from tqd.runtime.scheduler import Scheduler
from tqd.storage.sqlite import SqliteStorage

PYMODS = Path(__file__).parent / "pymods"


def _task_config(function: str, **extra: Any) -> dict[str, Any]:
    return {"handler": f"tqd_pool_probe:{function}", **extra}


TASKS = {
    "probe.record": _task_config("record"),
    "probe.measured": _task_config("measured"),
    "probe.gated": _task_config("gated", max_attempts=2, backoff_base=0.01, backoff_max=0.01),
    "probe.gated_short": _task_config(
        "gated", timeout=0.2, max_attempts=2, backoff_base=0.01, backoff_max=0.01
    ),
    "probe.boom": _task_config("boom", max_attempts=3, backoff_base=10, backoff_max=100),
    "probe.give_up": _task_config("give_up"),
    "probe.later": _task_config("later"),
    "probe.not_json": _task_config("not_json"),
    "probe.blocking": _task_config("blocking"),
}


class Harness:
    """A pool, its store and its catalog, plus the probe module's state."""

    def __init__(self, store: SqliteStorage, tmp: Path) -> None:
        self.store = store
        self.tmp = tmp
        self.clock = SystemClock()
        self.pool: WorkerPool | None = None
        self.handlers = None
        self.catalog: Catalog | None = None
        self._roles: list[tuple[Any, asyncio.Task]] = []

    def build(self, *, concurrency: int = 10, weights: dict[str, int] | None = None,
              dispatch: str = "weighted", served: tuple[str, ...] = ()) -> WorkerPool:
        config = load_config(
            None,
            env={},
            overrides={
                "storage": f"sqlite://{self.tmp / 'tqd.db'}",
                "python_path": [str(PYMODS)],
                "worker": {"concurrency": concurrency},
                "queues": {q: {"weight": n} for q, n in (weights or {}).items()},
                "tasks": TASKS,
            },
        )
        self.catalog = Catalog(config)
        self.handlers = build_handlers(self.catalog, config)
        self.probe.reset()
        self.pool = WorkerPool(
            self.store,
            self.catalog,
            self.handlers,
            PoolSettings(
                worker_id="w-pool",
                concurrency=concurrency,
                weights=dict(weights or {}),
                dispatch=dispatch,
                queues=served,
            ),
            self.clock,
        )
        return self.pool

    async def limit(self, queue: str, **limits: Any) -> None:
        """Set ``queue``'s limits in the store (where every process reads them)."""
        await self.store.set_limits(queue, QueueLimits(**limits), self.clock.now())

    @property
    def probe(self) -> Any:
        return sys.modules["tqd_pool_probe"]

    @property
    def state(self) -> Any:
        return self.probe.state

    async def enqueue(self, name: str, payload: Any = None, **options: Any) -> Task:
        assert self.catalog is not None
        now = self.clock.now()
        task = self.catalog.build(NewTask(name, orjson.dumps(payload), **options), now)
        (result,) = await self.store.enqueue([task])
        return result.task

    def run_scheduler(self) -> None:
        """Promote retries as the daemon would (they are due within ms here)."""
        scheduler = Scheduler(self.store, self.clock, interval=0.05)
        self.store.add_listener(scheduler.on_changes)
        self._roles.append((scheduler, asyncio.create_task(scheduler.run())))

    async def state_of(self, task_id: str) -> str | None:
        task = await self.store.get(task_id)
        return None if task is None else task.state

    async def wait_state(self, task_id: str, *states: str, deadline: float = 10.0) -> Task:
        async def reached() -> Task | None:
            task = await self.store.get(task_id)
            return task if task is not None and task.state in states else None

        return await until(reached, deadline, message=f"task {task_id} in {states}")

    async def close(self) -> None:
        for role, job in self._roles:
            role.stop()
            await job
        if self.pool is not None and self.pool._lease_job is not None:
            await self.pool.stop(0)
        if self.handlers is not None:
            self.probe.reset()
            await self.handlers.close()


@pytest.fixture
async def harness(store: SqliteStorage, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(store, tmp_path)
    try:
        yield h
    finally:
        await h.close()


# -- order ------------------------------------------------------------------


async def test_priority_order_then_fifo(harness: Harness) -> None:
    """Higher priority first; among equal priorities, first in first out."""
    pool = harness.build(concurrency=1)
    priorities = [0, 5, -3, 5, 0, 100, -100, 0, 5, -3]
    tasks = [await harness.enqueue("probe.record", i, priority=p) for i, p in enumerate(priorities)]
    await pool.start()
    await until(lambda: len(harness.state.started) == len(tasks), message="all started")
    order = sorted(range(len(tasks)), key=lambda i: (-priorities[i], i))
    expected = [tasks[i].id for i in order]
    assert harness.state.started == expected


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_fifo_within_a_queue(harness: Harness, concurrency: int) -> None:
    pool = harness.build(concurrency=concurrency)
    tasks = [await harness.enqueue("probe.record", i) for i in range(40)]
    await pool.start()
    await until(lambda: len(harness.state.started) == len(tasks), message="all started")
    assert harness.state.started == [t.id for t in tasks]


async def test_priority_applies_to_work_enqueued_while_running(harness: Harness) -> None:
    """With the only slot busy, a later high-priority task still runs before
    earlier low-priority ones."""
    pool = harness.build(concurrency=1)
    await pool.start()
    first = await harness.enqueue("probe.gated", {"gate": "first"})
    await until(lambda: first.id in harness.state.started)
    low = [await harness.enqueue("probe.record", i, priority=-1) for i in range(3)]
    high = await harness.enqueue("probe.record", "high", priority=50)
    harness.state.gate("first").set()
    await until(lambda: len(harness.state.started) == 5, message="all started")
    assert harness.state.started == [first.id, high.id, *[t.id for t in low]]


# -- concurrency ------------------------------------------------------------


async def test_global_and_per_queue_concurrency_never_exceeded(harness: Harness) -> None:
    pool = harness.build(concurrency=6)
    await harness.limit("a", concurrency=2)
    await harness.limit("b", concurrency=3)
    tasks = []
    for i in range(15):
        for queue in ("a", "b", "c"):
            seconds = random.Random(i).uniform(0.005, 0.03)
            tasks.append(await harness.enqueue("probe.measured", {"seconds": seconds}, queue=queue))
    await pool.start()
    for t in tasks:
        await harness.wait_state(t.id, "completed")
    state = harness.state
    assert len(state.started) == len(tasks)
    assert state.max_in_flight <= 6
    assert state.max_per_queue["a"] <= 2
    assert state.max_per_queue["b"] <= 3
    assert state.max_in_flight == 6  # the global limit is reached, not merely respected


async def test_queue_limit_binds_below_the_global_one(harness: Harness) -> None:
    pool = harness.build(concurrency=20)
    await harness.limit("narrow", concurrency=3)
    tasks = [await harness.enqueue("probe.measured", {"seconds": 0.02}, queue="narrow")
             for _ in range(12)]
    await pool.start()
    for t in tasks:
        await harness.wait_state(t.id, "completed")
    assert harness.state.max_per_queue["narrow"] == 3
    assert harness.state.max_in_flight == 3


# -- failures and retries ----------------------------------------------------


@pytest.mark.parametrize("where", ["config", "request"])
async def test_timeout_cancels_the_handler_and_counts_as_a_failed_attempt(
    harness: Harness, where: str
) -> None:
    """A timeout (from [tasks.X] or from the enqueue request) cancels the
    handler; the attempt fails and is retried, and the last one ends failed."""
    pool = harness.build()
    harness.run_scheduler()
    await pool.start()
    if where == "config":
        task = await harness.enqueue("probe.gated_short", {"gate": "never"})
    else:
        task = await harness.enqueue("probe.gated", {"gate": "never"}, timeout=0.2)
    assert task.timeout == 0.2

    done = await harness.wait_state(task.id, "failed")

    assert done.attempts == 2 and done.max_attempts == 2
    assert [e["kind"] for e in done.errors] == ["timeout", "timeout"]
    assert [e["attempt"] for e in done.errors] == [1, 2]
    assert "timed out after 0.2s" in done.errors[-1]["message"]
    assert harness.state.cancelled == [task.id, task.id]  # the handler saw both cancellations
    assert harness.state.finished == []


async def test_failure_schedules_a_retry_with_jittered_backoff(harness: Harness) -> None:
    """backoff_base 10: the first retry waits uniform(0, 10) seconds."""
    pool = harness.build()
    tasks = [await harness.enqueue("probe.boom") for _ in range(12)]
    await pool.start()
    delays = []
    for t in tasks:
        after = await harness.wait_state(t.id, "scheduled")
        assert after.attempts == 1 and after.max_attempts == 3
        error = after.error
        assert error is not None
        assert (error["kind"], error["message"], error["attempt"]) == ("exception", "RuntimeError: boom", 1)
        failed_at = datetime.fromisoformat(error["at"]).timestamp()
        assert after.run_at is not None
        delays.append(after.run_at - failed_at)
    assert all(-0.001 <= d <= 10.001 for d in delays), delays
    assert len({round(d, 6) for d in delays}) > 1, "no jitter: every retry waits the same"
    assert len(harness.state.started) == len(tasks)  # nothing ran twice meanwhile


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    config = load_config(
        None, env={}, overrides={"tasks": {"t": {"handler": "m:f", "backoff_base": 2, "backoff_max": 20}}},
        check_paths=False,
    )
    definition = Catalog(config).require("t")
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 20), (30, 20), (200, 20)]:
        samples = [definition.backoff(attempt, rng) for _ in range(400)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > 0.9 * ceiling and min(samples) < 0.1 * ceiling


async def test_retry_false_fails_at_once(harness: Harness) -> None:
    pool = harness.build()
    await pool.start()
    python = await harness.enqueue("probe.give_up")
    builtin = await harness.enqueue("tqd.fail", {"retry": False, "message": "nope"})

    for task, kind, message in [(python, "refused", "gave up on purpose"), (builtin, "error", "nope")]:
        done = await harness.wait_state(task.id, "failed", "scheduled")
        assert done.state == "failed"
        assert done.attempts == 1 and done.max_attempts == 3
        assert done.error is not None
        assert (done.error["kind"], done.error["message"]) == (kind, message)
        assert done.finished_at is not None


async def test_handler_chosen_delay_replaces_the_backoff(harness: Harness) -> None:
    pool = harness.build()
    await pool.start()
    task = await harness.enqueue("probe.later", {"delay": 500})
    after = await harness.wait_state(task.id, "scheduled")
    failed_at = datetime.fromisoformat(after.error["at"]).timestamp()
    assert after.run_at == pytest.approx(failed_at + 500, abs=0.01)


async def test_a_result_that_is_not_json_fails_without_retry(harness: Harness) -> None:
    pool = harness.build()
    await pool.start()
    task = await harness.enqueue("probe.not_json")
    done = await harness.wait_state(task.id, "failed", "scheduled")
    assert done.state == "failed" and done.error["kind"] == "result"


async def test_builtin_handlers(harness: Harness) -> None:
    pool = harness.build()
    await pool.start()
    echo = await harness.enqueue("tqd.echo", {"a": [1, 2, {"b": None}]})
    noop = await harness.enqueue("tqd.noop", "ignored")
    sleep = await harness.enqueue("tqd.sleep", {"seconds": 0.01})
    bad_sleep = await harness.enqueue("tqd.sleep", {"seconds": "long"})
    assert orjson.loads((await harness.wait_state(echo.id, "completed")).result) == {"a": [1, 2, {"b": None}]}
    assert (await harness.wait_state(noop.id, "completed")).result == b"null"
    assert (await harness.wait_state(sleep.id, "completed")).result == b"null"
    failed = await harness.wait_state(bad_sleep.id, "failed", "scheduled")
    assert failed.state == "failed" and "seconds" in failed.error["message"]


# -- cancellation ----------------------------------------------------------


async def test_cancelling_a_processing_task_cancels_its_handler(harness: Harness) -> None:
    pool = harness.build()
    await pool.start()
    task = await harness.enqueue("probe.gated", {"gate": "never"})
    await until(lambda: task.id in harness.state.started, message="started")

    cancelled = await harness.store.cancel(task.id, harness.clock.now())
    assert cancelled.state == "cancelled"

    await until(lambda: task.id in harness.state.cancelled, message="handler saw CancelledError")
    await until(lambda: not pool.running, message="the pool let go of it")
    stored = await harness.store.get(task.id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.errors) == ("cancelled", 0, [])
    assert harness.state.finished == []


# -- threads and the event loop ------------------------------------------


async def test_sync_handlers_run_in_threads_and_the_loop_stays_responsive(harness: Harness) -> None:
    """A sync handler blocks its thread until the test, on the event loop,
    releases it. Were it run on the loop, nothing below could happen."""
    pool = harness.build()
    await pool.start()
    blocked = await harness.enqueue("probe.blocking")
    await until(harness.state.sync_started.is_set, message="sync handler started")

    # The loop serves other tasks while the sync handler blocks.
    echo = await harness.enqueue("tqd.echo", "meanwhile")
    done = await harness.wait_state(echo.id, "completed")
    assert done.result == b'"meanwhile"'
    assert await harness.state_of(blocked.id) == "processing"

    harness.state.sync_release.set()
    finished = await harness.wait_state(blocked.id, "completed")
    thread = harness.state.threads[blocked.id]
    assert thread != threading.main_thread().name and thread.startswith("tqd-handler")
    assert orjson.loads(finished.result) == {"attempt": 1, "thread": thread}


# -- waking without polling ------------------------------------------------


async def test_enqueue_into_an_idle_pool_starts_without_polling(harness: Harness) -> None:
    """An idle pool makes no lease calls; an enqueue wakes it at once."""
    store = harness.store
    calls: list[str] = []
    real_lease = store._lease

    async def counting_lease(
        queue: str, limit: int, worker: str, now: float, visibility: float | None
    ) -> list[Task]:
        calls.append(queue)
        return await real_lease(queue, limit, worker, now, visibility)

    store._lease = counting_lease  # type: ignore[method-assign]
    pool = harness.build()
    await pool.start()
    warmup = await harness.enqueue("probe.record", "warm-up")
    await harness.wait_state(warmup.id, "completed")
    settled = len(calls)

    # Idle for a while: not one lease call.
    await asyncio.sleep(0.5)
    assert len(calls) == settled, f"the idle pool leased {len(calls) - settled} times"

    task = await harness.enqueue("probe.record", "wake up")
    await until(lambda: task.id in harness.state.started, deadline=2.0,
                message="the task started after the enqueue")
    assert 1 <= len(calls) - settled <= 3
    await harness.wait_state(task.id, "completed")
    await asyncio.sleep(0.3)
    assert len(calls) - settled <= 3, "the pool went on leasing after the queue was empty"


async def test_resume_wakes_an_idle_pool(harness: Harness) -> None:
    pool = harness.build()
    await harness.store.set_paused("held", True)
    await pool.start()
    task = await harness.enqueue("probe.record", queue="held")
    await asyncio.sleep(0.2)
    assert await harness.state_of(task.id) == "pending"
    await harness.store.set_paused("held", False)
    await harness.wait_state(task.id, "completed", deadline=2.0)


# -- stopping ----------------------------------------------------------------


async def test_stop_lets_short_tasks_finish_and_hands_back_long_ones(harness: Harness) -> None:
    pool = harness.build(concurrency=4)
    short = [await harness.enqueue("probe.gated", {"gate": "short"}) for _ in range(2)]
    long = [await harness.enqueue("probe.gated", {"gate": "never"}) for _ in range(2)]
    waiting = [await harness.enqueue("probe.record", i) for i in range(3)]
    await pool.start()
    await until(lambda: len(harness.state.started) == 4, message="four running")

    stopping = asyncio.create_task(pool.stop(grace=0.5))
    await until(lambda: pool._stopping, message="stop began")
    harness.state.gate("short").set()  # these finish within the grace
    handed_back = await stopping

    assert handed_back == 2
    for t in short:
        stored = await harness.store.get(t.id)
        assert (stored.state, stored.attempts) == ("completed", 1)
    for t in long:
        stored = await harness.store.get(t.id)
        assert (stored.state, stored.attempts, stored.errors) == ("pending", 0, [])
        assert stored.lease_token is None and stored.worker is None
    assert sorted(harness.state.cancelled) == sorted(t.id for t in long)
    for t in waiting:  # never started: still pending
        assert await harness.state_of(t.id) == "pending"
        assert t.id not in harness.state.started
    assert not pool.running


# -- a lease taken back while its handler runs -----------------------------


async def test_a_task_reclaimed_and_leased_again_by_the_same_pool(
    store: SqliteStorage, other: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    """The heartbeat stalled, another process reclaimed a running task without
    this pool hearing of it, and this very pool leased it again: the old run
    stops (its lease is gone), the new run completes, and the pool's
    bookkeeping stays right (no lost slot, no error in a finished job)."""
    blocker = Blocker()
    pool = pool_with(store, clock, {"block": blocker}, concurrency=4)
    task = make("block", queue="q", visibility_timeout=30)
    await store.enqueue([task])
    await pool.start()
    errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    try:
        await until(lambda: len(blocker.started) == 1, message="first run")
        await other.reclaim_expired(clock.now() + 31)
        # A new task wakes the pool; it leases the reclaimed one (older) too.
        nudge = make("block", queue="q")
        await store.enqueue([nudge])
        await until(lambda: len(blocker.started) == 3, message="second run and the nudge")
        assert blocker.started.count(task.id) == 2
        await until(lambda: blocker.ended.get(task.id) == "cancelled", message="first run stopped")
        assert sorted(pool.running) == sorted([task.id, nudge.id])
        blocker.release.set()
        await until(lambda: not pool.running, message="both runs ended")

        async def completed() -> bool:
            stored = await store.get(task.id)
            return stored is not None and stored.state == "completed"

        await until(completed, message="the second run settled")
        # Every slot came back: the pool fills all four again.
        blocker.release.clear()
        await store.enqueue(make.many(4, name="block", queue="q"))
        await until(lambda: len(pool.running) == 4, message="four slots in use")
        assert errors == []
    finally:
        blocker.release.set()
        await pool.stop(0)


async def test_a_reclaim_announced_in_this_process_stops_the_handler_at_once(
    store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    """When the reclaim is made through the pool's own store, its change event
    stops the handler without waiting for a heartbeat."""
    blocker = Blocker()
    pool = pool_with(store, clock, {"block": blocker}, concurrency=1)
    task = make("block", queue="q", visibility_timeout=30)
    await store.enqueue([task])
    await pool.start()
    try:
        await until(lambda: len(blocker.started) == 1, message="running")
        await store.reclaim_expired(clock.now() + 31)
        await until(lambda: blocker.ended.get(task.id) == "cancelled", message="handler stopped")
    finally:
        blocker.release.set()
        await pool.stop(0)
