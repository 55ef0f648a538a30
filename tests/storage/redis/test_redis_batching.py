"""Concurrent enqueues of one queue share round trips (batcher.py) and each
caller still gets exactly its own answer."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from tests.storage.helpers import TaskMaker, counts
from tqd.clock import FakeClock
from tqd.errors import Conflict


async def _evalsha_calls(raw: Redis) -> int:
    stats = await raw.info("commandstats")
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


async def test_concurrent_single_enqueues_share_round_trips(opened, raw):
    make = TaskMaker(FakeClock())
    s = await opened()
    await s.enqueue([make()])  # the queue is registered; scripts are warm
    tasks = make.many(200)
    before = await _evalsha_calls(raw)
    results = await asyncio.gather(*(s.enqueue([t]) for t in tasks))
    used = await _evalsha_calls(raw) - before
    assert [r[0].task.id for r in results] == [t.id for t in tasks]
    assert all(r[0].created for r in results)
    assert used < 50, f"{used} script runs for 200 concurrent enqueues"
    assert await counts(s) == {"pending": 201}


async def test_a_key_shared_by_concurrent_callers_stores_one_task(opened):
    make = TaskMaker(FakeClock())
    s = await opened()
    await s.enqueue([make()])
    tasks = [make(key="same") for _ in range(20)]
    results = [r[0] for r in await asyncio.gather(*(s.enqueue([t]) for t in tasks))]
    created = [r for r in results if r.created]
    assert len(created) == 1
    assert {r.task.id for r in results} == {created[0].task.id}
    assert await counts(s) == {"pending": 2}


async def test_a_duplicate_id_fails_only_its_own_caller(opened):
    make = TaskMaker(FakeClock())
    s = await opened()
    stored = make()
    await s.enqueue([stored])
    others = make.many(10)
    # same id, other content (an identical task would count as stored already)
    clash = msgspec.structs.replace(make(payload=b"1"), id=stored.id)
    calls = [s.enqueue([t]) for t in others[:5]] + [s.enqueue([clash])]
    calls += [s.enqueue([t]) for t in others[5:]]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[5], Conflict)
    oks = results[:5] + results[6:]
    assert [r[0].task.id for r in oks] == [t.id for t in others]
    assert await counts(s) == {"pending": 11}


async def test_an_unreachable_store_fails_every_waiting_caller(own_redis, opened):
    from tqd.errors import StorageUnavailable

    make = TaskMaker(FakeClock())
    s = await opened(own_redis.url)
    await s.enqueue([make()])
    own_redis.stop()
    results = await asyncio.gather(*(s.enqueue([make()]) for _ in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(r, StorageUnavailable) for r in results)


@pytest.mark.parametrize("n", [1, 3])
async def test_a_batch_over_several_queues_is_still_one_transaction(opened, n):
    make = TaskMaker(FakeClock())
    s = await opened()
    batch = [make(queue=f"q{i}") for i in range(n)] + [make(queue="q0")]
    results = await s.enqueue(batch)
    assert [r.task.id for r in results] == [t.id for t in batch] and all(r.created for r in results)
