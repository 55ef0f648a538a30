"""Several processes run the supervisor, scheduler and janitor at once.

Two handles with their own connections stand for two processes on one real
Redis; their calls interleave at the server. Every background operation
first counts what is due (one round trip) and then acts in a script that
selects again, atomically, so racing processes never double a reclaim,
a promotion or an expiry, and never lose one.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.storage.helpers import TaskMaker, complete, counts, put
from tqd.clock import FakeClock

N = 300


async def _race(a, b, call, rounds: int = 8) -> list:
    """Both handles call ``call(handle)`` ``rounds`` times each, interleaved."""
    jobs = [call(h) for _ in range(rounds) for h in (a, b)]
    return await asyncio.gather(*jobs)


async def test_racing_reclaims_take_back_each_task_once(opened):
    clock = FakeClock()
    make = TaskMaker(clock)
    a, b = await opened(), await opened()
    await put(a, *make.many(N, visibility_timeout=5.0))
    leased = await a.lease("q", N, "gone", clock.now())
    assert len(leased) == N
    clock.advance(6.0)
    results = await _race(a, b, lambda h: h.reclaim_expired(clock.now(), 29))
    taken = Counter(t.id for batch in results for t in batch)
    while len(taken) < N:  # 16 rounds of 29 cover 300; loop in case of short shares
        more = await b.reclaim_expired(clock.now(), 1000)
        assert more
        taken.update(t.id for t in more)
    assert set(taken) == {t.id for t in leased}
    assert max(taken.values()) == 1
    assert await counts(a) == {"pending": N}
    for task in [await a.get(t.id) for t in leased[:20]]:
        assert task.attempts == 1 and [e["kind"] for e in task.errors] == ["lost"]


async def test_racing_promotions_lose_none_and_double_none(opened):
    clock = FakeClock()
    make = TaskMaker(clock)
    a, b = await opened(), await opened()
    await put(a, *make.many(N, delay=1.0), *make.many(N, delay=1.0, queue="r"))
    clock.advance(2.0)
    results = await _race(a, b, lambda h: h.promote_due(clock.now(), 41))
    total = sum(results)
    total += await a.promote_due(clock.now(), 10_000)
    assert total == 2 * N
    assert await counts(a) == {"pending": N}
    assert await counts(b, "r") == {"pending": N}
    assert await a.next_run_at() is None


async def test_racing_expiries_delete_each_task_once(opened):
    clock = FakeClock()
    make = TaskMaker(clock)
    a, b = await opened(), await opened()
    await put(a, *make.many(N))
    leased = await a.lease("q", N, "w", clock.now())
    assert all(await a.settle([complete(t) for t in leased], clock.now()))
    clock.advance(10.0)
    results = await _race(a, b, lambda h: h.expire_finished("completed", clock.now(), 23))
    total = sum(results) + await b.expire_finished("completed", clock.now(), 10_000)
    assert total == N
    assert await counts(a) == {}


async def test_racing_leases_never_hand_out_a_task_twice(opened):
    clock = FakeClock()
    make = TaskMaker(clock)
    a, b = await opened(), await opened()
    await put(a, *make.many(N))
    results = await _race(a, b, lambda h: h.lease("q", 13, f"w{id(h)}", clock.now()), rounds=12)
    got = Counter(t.id for batch in results for t in batch)
    assert len(got) == N and max(got.values()) == 1
    assert await counts(b) == {"processing": N}
