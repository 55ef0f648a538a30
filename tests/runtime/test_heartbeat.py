"""The heartbeat, table-driven: tasks running in a real pool on a real store →
run_once(now) → expect which leases were extended and when the next round is.

The pool leases at the FakeClock's ``T0``; the heartbeat extends a lease once
a third of its visibility timeout has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.helpers.aio import until
from tests.runtime.kit import Blocker, pool_with
from tests.storage.helpers import TaskMaker
from tqd.clock import FakeClock
from tqd.runtime.heartbeat import Heartbeat
from tqd.runtime.pool import WorkerPool
from tqd.storage.sqlite import SqliteStorage


@dataclass
class Case:
    name: str
    #: label → visibility timeout of a running task.
    running: dict[str, float]
    #: Seconds after T0 at which the heartbeat runs.
    at: float
    #: Labels whose lease must be extended to ``T0 + at + visibility_timeout``.
    extended: set[str]
    #: What run_once returns (None: no task runs).
    want_delay: float | None


CASES = [
    Case("nothing running", {}, 10, set(), None),
    Case("before a third of the timeout: untouched", {"a": 30}, 9.5, set(), 0.5),
    Case("at a third of the timeout: extended", {"a": 30}, 10, {"a"}, 10),
    Case("a late round still extends (from now)", {"a": 30}, 25, {"a"}, 10),
    Case("a short timeout is extended early", {"a": 3}, 1, {"a"}, 1),
    Case(
        "only the leases that are due",
        {"short": 30, "long": 90},
        10,
        {"short"},
        10,  # short is due again at +20, long first at +30
    ),
]


@pytest.fixture
async def blocker() -> AsyncIterator[Blocker]:
    b = Blocker()
    yield b
    b.release.set()


async def _running_pool(
    store: SqliteStorage, clock: FakeClock, make: TaskMaker, blocker: Blocker,
    timeouts: dict[str, float], concurrency: int = 10,
) -> tuple[WorkerPool, dict]:
    pool = pool_with(store, clock, {"block": blocker}, concurrency=concurrency)
    tasks = {label: make("block", queue=f"q-{label}", visibility_timeout=vt)
             for label, vt in timeouts.items()}
    if tasks:
        await store.enqueue(list(tasks.values()))
    await pool.start()
    await until(lambda: len(blocker.started) == len(tasks), message="every task started")
    return pool, tasks


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_heartbeat_round(
    case: Case, store: SqliteStorage, clock: FakeClock, make: TaskMaker, blocker: Blocker
) -> None:
    t0 = clock.now()
    pool, tasks = await _running_pool(store, clock, make, blocker, case.running)
    try:
        before = {label: await store.get(t.id) for label, t in tasks.items()}
        heartbeat = Heartbeat(store, pool, clock, interval=5.0)
        now = t0 + case.at

        delay = await heartbeat.run_once(now)

        if case.want_delay is None:
            assert delay is None
        else:
            assert delay == pytest.approx(case.want_delay)
        for label, task in tasks.items():
            after = await store.get(task.id)
            assert after is not None and after.state == "processing"
            assert after.lease_token == before[label].lease_token
            if label in case.extended:
                assert after.lease_expires_at == pytest.approx(now + task.visibility_timeout)
            else:
                assert after.lease_expires_at == before[label].lease_expires_at
        assert blocker.ended == {}
    finally:
        await pool.stop(0)


async def test_lost_lease_stops_the_handler(
    store: SqliteStorage, other: SqliteStorage, clock: FakeClock, make: TaskMaker,
    blocker: Blocker,
) -> None:
    """The lease ran out and another worker holds the task now: the extend is
    refused, the handler is cancelled, nothing is settled over the new lease."""
    t0 = clock.now()
    pool, tasks = await _running_pool(store, clock, make, blocker, {"a": 30})
    task = tasks["a"]
    try:
        # The heartbeat stalled past the deadline; another process's
        # supervisor reclaimed the task and its worker leased it under a new
        # token. This pool heard nothing of it: only the heartbeat can tell.
        await other.reclaim_expired(t0 + 31)
        (theirs,) = await other.lease("q-a", 1, "w-other", t0 + 31)
        await asyncio.sleep(0.05)
        assert blocker.ended == {} and task.id in pool.running
        heartbeat = Heartbeat(store, pool, clock, interval=5.0)

        await heartbeat.run_once(t0 + 31)

        await until(lambda: task.id in blocker.ended, message="handler stopped")
        assert blocker.ended[task.id] == "cancelled"
        await until(lambda: not pool.running, message="pool forgot the task")
        stored = await store.get(task.id)
        assert stored is not None
        assert (stored.state, stored.worker, stored.lease_token) == (
            "processing", "w-other", theirs.lease_token)
        assert stored.lease_expires_at == theirs.lease_expires_at
    finally:
        await pool.stop(0)


async def test_registration_appears_in_workers(
    store: SqliteStorage, clock: FakeClock, make: TaskMaker, blocker: Blocker
) -> None:
    t0 = clock.now()
    pool, tasks = await _running_pool(store, clock, make, blocker, {"a": 30})
    try:
        heartbeat = Heartbeat(store, pool, clock, interval=5.0, worker_ttl=30.0)
        assert await store.workers(t0) == []

        await heartbeat.run_once(t0 + 1)
        (me,) = await store.workers(t0 + 1)
        assert me.id == "w-test"
        assert me.running == [tasks["a"].id]
        assert me.last_heartbeat == t0 + 1
        assert me.concurrency == 10

        # Within the interval the registration is not rewritten.
        await heartbeat.run_once(t0 + 3)
        (me,) = await store.workers(t0 + 3)
        assert me.last_heartbeat == t0 + 1
        # After it, it is, and the registration lives worker_ttl from then.
        await heartbeat.run_once(t0 + 6)
        (me,) = await store.workers(t0 + 6)
        assert me.last_heartbeat == t0 + 6
        assert [w.id for w in await store.workers(t0 + 35.9)] == ["w-test"]
        assert await store.workers(t0 + 36.1) == []
    finally:
        await pool.stop(0)


async def test_extended_lease_outlives_the_visibility_timeout(
    store: SqliteStorage, clock: FakeClock, make: TaskMaker, blocker: Blocker
) -> None:
    """A task may run far longer than its visibility timeout while its process
    lives: the supervisor does not reclaim a lease the heartbeat keeps."""
    from tqd.runtime.supervisor import Supervisor

    t0 = clock.now()
    pool, tasks = await _running_pool(store, clock, make, blocker, {"a": 3})
    try:
        heartbeat = Heartbeat(store, pool, clock, interval=5.0)
        supervisor = Supervisor(store, clock)
        now = t0
        for _ in range(30):  # 30 s of 1 s steps: ten visibility timeouts
            now += 1
            await heartbeat.run_once(now)
            await supervisor.run_once(now)
        assert supervisor.reclaimed_total == 0
        blocker.release.set()
        await until(lambda: not pool.running)
        done = await until(lambda: _finished(store, tasks["a"].id), message="settled")
        assert done.state == "completed"
    finally:
        await pool.stop(0)


async def _finished(store: SqliteStorage, task_id: str):
    task = await store.get(task_id)
    return task if task is not None and task.state == "completed" else None
