"""reclaim_expired and reclaim_worker: lost leases come back or die."""

from __future__ import annotations

from .helpers import counts, lease_one, put


async def test_an_expired_lease_returns_the_task_to_pending(storage, make, clock):
    await put(storage, make(max_attempts=3, visibility_timeout=10))
    leased = await lease_one(storage, clock.now(), worker="gone")
    now = clock.advance(11)
    [back] = await storage.reclaim_expired(now)
    assert back.id == leased.id
    assert back.state == "pending"
    assert back.attempts == 1
    assert back.lease_token is None
    assert back.worker is None
    assert back.error["kind"] == "lost"
    assert back.error["attempt"] == 1
    assert await storage.get(leased.id) == back
    assert await counts(storage) == {"pending": 1}
    again = await lease_one(storage, now)
    assert again.id == leased.id
    assert again.attempt == 2


async def test_an_expired_lease_on_the_last_attempt_fails_the_task(storage, make, clock):
    await put(storage, make(max_attempts=2, visibility_timeout=10))
    for _ in range(2):
        await lease_one(storage, clock.now())
        [back] = await storage.reclaim_expired(clock.advance(11))
    assert back.state == "failed"
    assert back.attempts == 2
    assert back.finished_at == clock.now()
    assert [e["kind"] for e in back.errors] == ["lost", "lost"]
    assert [e["attempt"] for e in back.errors] == [1, 2]
    assert await storage.get(back.id) == back
    assert await counts(storage) == {"failed": 1}
    assert await storage.lease("q", 1, "w1", clock.now()) == []


async def test_reclaim_leaves_unexpired_leases_alone(storage, make, clock):
    short, long = make(visibility_timeout=10), make(visibility_timeout=100)
    await put(storage, short, long)
    leased = {t.id: t for t in await storage.lease("q", 2, "w1", clock.now())}
    reclaimed = await storage.reclaim_expired(clock.advance(50))
    assert [t.id for t in reclaimed] == [short.id]
    kept = await storage.get(long.id)
    assert kept == leased[long.id]
    assert await storage.extend([(long.id, kept.lease_token)], clock.now()) == [True]
    assert await counts(storage) == {"pending": 1, "processing": 1}


async def test_an_extended_lease_is_not_reclaimed(storage, make, clock):
    await put(storage, make(visibility_timeout=10))
    task = await lease_one(storage, clock.now())
    assert await storage.extend([(task.id, task.lease_token)], clock.advance(8)) == [True]
    assert await storage.reclaim_expired(clock.advance(8)) == []
    assert (await storage.get(task.id)).state == "processing"
    assert len(await storage.reclaim_expired(clock.advance(3))) == 1


async def test_reclaim_expired_respects_its_limit(storage, make, clock):
    await put(storage, *make.many(5, visibility_timeout=10))
    await storage.lease("q", 5, "w1", clock.now())
    now = clock.advance(11)
    assert len(await storage.reclaim_expired(now, limit=2)) == 2
    assert await counts(storage) == {"pending": 2, "processing": 3}
    assert len(await storage.reclaim_expired(now, limit=10)) == 3
    assert await storage.reclaim_expired(now) == []
    assert await counts(storage) == {"pending": 5}


async def test_reclaim_expired_with_nothing_leased_is_a_no_op(storage, make, clock):
    await put(storage, make(), make(delay=5))
    assert await storage.reclaim_expired(clock.advance(1000)) == []
    assert await counts(storage) == {"pending": 1, "scheduled": 1}


async def test_reclaim_worker_takes_back_only_that_workers_leases(storage, make, clock):
    await put(storage, *make.many(4, visibility_timeout=100))
    crashed = await storage.lease("q", 3, "crashed", clock.now())
    alive = await lease_one(storage, clock.now(), worker="alive")
    back = await storage.reclaim_worker("crashed", clock.advance(1))
    assert sorted(t.id for t in back) == sorted(t.id for t in crashed)
    assert all(t.state == "pending" and t.attempts == 1 for t in back)
    assert all(t.error["kind"] == "lost" for t in back)
    assert await storage.get(alive.id) == alive
    assert await counts(storage) == {"pending": 3, "processing": 1}
    assert await storage.reclaim_worker("crashed", clock.now()) == []


async def test_reclaim_worker_fails_tasks_on_their_last_attempt(storage, make, clock):
    await put(storage, make(max_attempts=1), make(max_attempts=2))
    await storage.lease("q", 2, "crashed", clock.now())
    back = {t.max_attempts: t for t in await storage.reclaim_worker("crashed", clock.now())}
    assert back[1].state == "failed"
    assert back[2].state == "pending"
    assert await counts(storage) == {"failed": 1, "pending": 1}


async def test_reclaim_worker_revokes_the_old_tokens(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now(), worker="crashed")
    await storage.reclaim_worker("crashed", clock.now())
    assert await storage.extend([(task.id, task.lease_token)], clock.now()) == [False]
