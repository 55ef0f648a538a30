"""How the worker pool shares its slots among queues and waits for queue
limits.

Dispatch (weighted shares, strict order) runs on a real SQLite store with
the probe handlers recording start order. Where a test is about the pool's
own arithmetic (how many it asks each queue for, when it asks again after a
lease cut short by a limit) a stub store answers the leases from a script
and records when it was asked.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.aio import until
from tests.runtime.test_pool import Harness
from tqd.clock import SystemClock
from tqd.config import load_config
from tqd.models import Change, QueueChange
from tqd.runtime.catalog import Catalog
from tqd.runtime.handlers import HandlerSet
from tqd.runtime.pool import PARK_RECHECK, PoolSettings, WorkerPool
from tqd.storage.base import Leased
from tqd.storage.sqlite import SqliteStorage


@pytest.fixture
async def harness(store: SqliteStorage, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(store, tmp_path)
    try:
        yield h
    finally:
        await h.close()


async def _backlog(harness: Harness, queue: str, n: int, seconds: float = 0.005) -> list[str]:
    return [(await harness.enqueue("probe.measured", {"seconds": seconds}, queue=queue)).id
            for _ in range(n)]


# -- weighted ---------------------------------------------------------------


async def test_weighted_dispatch_starts_tasks_in_proportion_to_the_weights(harness: Harness) -> None:
    """Weights 3 and 1, four slots, both queues backed up: while both have
    work, starts go 3:1 (the free slots come back one at a time, so the
    share holds only if the pool carries the fractions between rounds)."""
    pool = harness.build(concurrency=4, weights={"a": 3})  # b weighs 1
    ids = {"a": await _backlog(harness, "a", 150), "b": await _backlog(harness, "b", 150)}
    queue_of = {tid: q for q, tids in ids.items() for tid in tids}
    await pool.start()
    await until(lambda: len(harness.state.started) >= 120, 30, message="120 starts")
    first = Counter(queue_of[t] for t in harness.state.started[:120])
    print(f"\nweighted 3:1, first 120 starts: {dict(first)}")
    # Exactly 90:30 if every round's shares held; allow a few for rounds
    # that raced with a finishing task.
    assert 84 <= first["a"] <= 96, first


async def test_equal_weights_share_equally(harness: Harness) -> None:
    pool = harness.build(concurrency=3)
    ids = {q: await _backlog(harness, q, 60) for q in ("a", "b", "c")}
    queue_of = {tid: q for q, tids in ids.items() for tid in tids}
    await pool.start()
    await until(lambda: len(harness.state.started) >= 90, 30, message="90 starts")
    first = Counter(queue_of[t] for t in harness.state.started[:90])
    assert all(27 <= first[q] <= 33 for q in "abc"), first


# -- strict -----------------------------------------------------------------


async def test_strict_dispatch_serves_a_later_queue_only_when_the_earlier_has_nothing(
    harness: Harness,
) -> None:
    pool = harness.build(concurrency=2, dispatch="strict", served=("first", "second"))
    second = await _backlog(harness, "second", 20)
    first = await _backlog(harness, "first", 20)  # enqueued after, served before
    await pool.start()
    await until(lambda: len(harness.state.started) == 40, 30, message="all started")
    order = harness.state.started
    # The earliest start of "second" comes after the last start of "first":
    # "second" got a slot only once a lease of "first" came back short.
    assert max(order.index(t) for t in first) < min(order.index(t) for t in second), order


async def test_strict_dispatch_gives_a_later_queue_what_a_limit_holds_back(harness: Harness) -> None:
    """A queue at its concurrency limit has nothing it may lease: the next
    queue takes the remaining slots."""
    pool = harness.build(concurrency=4, dispatch="strict", served=("first", "second"))
    await harness.limit("first", concurrency=1)
    await _backlog(harness, "first", 10, seconds=0.05)
    await _backlog(harness, "second", 30, seconds=0.05)
    await pool.start()
    await until(lambda: harness.state.max_per_queue["second"] >= 3, 10, message="second uses 3 slots")
    assert harness.state.max_per_queue["first"] == 1


async def test_a_queue_at_its_limit_is_leased_again_as_soon_as_a_task_ends(harness: Harness) -> None:
    """Parked at its concurrency limit, the queue waits for its tasks' ends,
    not for the PARK_RECHECK fallback: 30 tasks of 20 ms three at a time take
    about 0.2 s; one missed wake-up per parking would take ~10 s."""
    pool = harness.build(concurrency=20)
    await harness.limit("narrow", concurrency=3)
    ids = await _backlog(harness, "narrow", 30, seconds=0.02)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await pool.start()
    for tid in ids:
        await harness.wait_state(tid, "completed")
    took = loop.time() - began
    print(f"\n30 tasks of 20 ms at concurrency 3: {took:.2f}s")
    assert harness.state.max_per_queue["narrow"] == 3
    assert took < 5 * PARK_RECHECK


# -- waiting for limits (stub store) -----------------------------------------


class StubStore:
    """Answers each lease with ``answer(queue, limit, n)`` (n: how many leases
    of that queue came before) and records ``(loop time, queue, limit)``."""

    def __init__(self, answer: Callable[[str, int, int], Leased]) -> None:
        self.answer = answer
        self.calls: list[tuple[float, str, int]] = []
        self.listeners: list[Callable] = []

    def add_listener(self, fn: Callable) -> None:
        self.listeners.append(fn)

    def remove_listener(self, fn: Callable) -> None:
        self.listeners.remove(fn)

    def emit(self, *changes: Change | QueueChange) -> float:
        for fn in self.listeners:
            fn(list(changes))
        return asyncio.get_running_loop().time()

    async def queues(self) -> list:
        return []

    async def lease(self, queue: str, limit: int, worker: str, now: float, visibility=None) -> Leased:
        n = sum(1 for _, q, _ in self.calls if q == queue)
        self.calls.append((asyncio.get_running_loop().time(), queue, limit))
        return self.answer(queue, limit, n)

    async def settle(self, outcomes, now) -> list[bool]:
        return [True] * len(outcomes)

    def times(self, queue: str = "q") -> list[float]:
        return [t for t, q, _ in self.calls if q == queue]


@pytest.fixture
async def stub_pool() -> AsyncIterator[Callable[..., WorkerPool]]:
    pools: list[WorkerPool] = []

    async def start(stub: StubStore, queues: tuple[str, ...] = ("q",), **settings) -> WorkerPool:
        config = load_config(None, env={}, check_paths=False)
        pool = WorkerPool(stub, Catalog(config), HandlerSet({}, ThreadPoolExecutor(max_workers=1)),  # type: ignore[arg-type]
                          PoolSettings(worker_id="w-stub", queues=queues, **settings), SystemClock())
        pools.append(pool)
        await pool.start()
        return pool

    yield start
    for pool in pools:
        await pool.stop(0)


def _script(*answers: Leased) -> Callable[[str, int, int], Leased]:
    """The n-th lease gets ``answers[n]``; later ones come back empty."""
    return lambda queue, limit, n: answers[n] if n < len(answers) else Leased()


async def test_a_rate_limited_queue_is_held_for_retry_in(stub_pool) -> None:
    stub = StubStore(_script(Leased(limited="rate", retry_in=0.3)))
    await stub_pool(stub)
    await until(lambda: len(stub.times()) >= 2, 5, message="a second lease")
    first, second = stub.times()[:2]
    print(f"\nrate hold: asked again after {second - first:.3f}s (retry_in 0.3)")
    assert 0.3 <= second - first < 0.5


async def test_an_edit_of_the_limits_ends_a_rate_hold_at_once(stub_pool) -> None:
    stub = StubStore(_script(Leased(limited="rate", retry_in=60)))
    await stub_pool(stub)
    await until(lambda: stub.times(), 5, message="the first lease")
    edited = stub.emit(QueueChange("q", "limits"))
    await until(lambda: len(stub.times()) >= 2, 5, message="a lease after the edit")
    assert stub.times()[1] - edited < 0.2


async def test_a_queue_at_its_concurrency_waits_for_a_task_to_leave_processing(stub_pool) -> None:
    stub = StubStore(_script(Leased(limited="concurrency")))
    await stub_pool(stub)
    await until(lambda: stub.times(), 5, message="the first lease")
    # An enqueue does not make room under a concurrency limit...
    stub.emit(Change("t1", "q", "n", "pending", "enqueue"))
    await asyncio.sleep(0.1)  # the pool's chance to lease in vain
    assert len(stub.times()) == 1
    # ...a task of the queue ending (here, in another process) does.
    ended = stub.emit(Change("t0", "q", "n", "completed"))
    await until(lambda: len(stub.times()) >= 2, 5, message="a lease after the task ended")
    assert stub.times()[1] - ended < 0.2


async def test_a_queue_at_a_group_limit_is_asked_again_for_a_new_task(stub_pool) -> None:
    """The new task may be of a group under its limit."""
    stub = StubStore(_script(Leased(limited="group")))
    await stub_pool(stub)
    await until(lambda: stub.times(), 5, message="the first lease")
    enqueued = stub.emit(Change("t1", "q", "n", "pending"))
    await until(lambda: len(stub.times()) >= 2, 5, message="a lease after the enqueue")
    assert stub.times()[1] - enqueued < 0.2


async def test_a_parked_queue_is_checked_again_without_news(stub_pool) -> None:
    stub = StubStore(_script(Leased(limited="concurrency")))
    await stub_pool(stub)
    await until(lambda: len(stub.times()) >= 2, 5, message="a re-check")
    first, second = stub.times()[:2]
    assert PARK_RECHECK <= second - first < PARK_RECHECK + 0.5


async def test_weighted_shares_of_one_round(stub_pool) -> None:
    """Four free slots, weights 3:1: the first round asks a for 3, b for 1,
    in one round trip each; a strict pool asks a for all four first."""
    stub = StubStore(_script())
    await stub_pool(stub, queues=("a", "b"), concurrency=4, weights={"a": 3})
    await until(lambda: len(stub.calls) >= 2, 5, message="two leases")
    assert sorted((q, n) for _, q, n in stub.calls[:2]) == [("a", 3), ("b", 1)]

    strict = StubStore(_script())
    await stub_pool(strict, queues=("b", "a"), concurrency=4, dispatch="strict")
    await until(lambda: len(strict.calls) >= 2, 5, message="two leases")
    # b first (the order of [worker] queues); it came back short, so a is
    # offered the slots b left.
    assert [(q, n) for _, q, n in strict.calls[:2]] == [("b", 4), ("a", 4)]


async def test_a_reload_brings_new_weights_and_dispatch(stub_pool) -> None:
    stub = StubStore(_script())
    pool = await stub_pool(stub, queues=("a", "b"), concurrency=4)
    await until(lambda: len(stub.calls) >= 2, 5, message="two leases")
    assert sorted((q, n) for _, q, n in stub.calls) == [("a", 2), ("b", 2)]

    async def reload(**settings) -> list[tuple[str, int]]:
        before = len(stub.calls)
        fields = {"worker_id": "w-stub", "queues": ("a", "b"), "concurrency": 4, **settings}
        await pool.apply(pool._catalog, pool._handlers, PoolSettings(**fields))
        await until(lambda: len(stub.calls) >= before + 2, 5, message="leases after the reload")
        return [(q, n) for _, q, n in stub.calls[before:before + 2]]

    assert sorted(await reload(weights={"b": 3})) == [("a", 1), ("b", 3)]
    assert await reload(dispatch="strict", queues=("b", "a")) == [("b", 4), ("a", 4)]
