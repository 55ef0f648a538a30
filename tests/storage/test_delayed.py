"""Scheduled tasks: promote_due and next_run_at."""

from __future__ import annotations

from .helpers import counts, fail, lease_one, put


async def test_next_run_at_is_none_without_scheduled_tasks(storage, make):
    assert await storage.next_run_at() is None
    await put(storage, make())
    assert await storage.next_run_at() is None


async def test_next_run_at_is_the_earliest_run_at(storage, make, clock):
    await put(storage, make(delay=30), make(delay=10), make(delay=20))
    assert await storage.next_run_at() == clock.now() + 10


async def test_promote_due_makes_only_due_tasks_pending(storage, make, clock):
    soon, later = make(delay=10), make(delay=100)
    await put(storage, soon, later)
    start = clock.now()
    assert await storage.promote_due(clock.advance(5)) == 0
    assert await storage.promote_due(clock.advance(5)) == 1  # run_at == now is due
    assert (await storage.get(soon.id)).state == "pending"
    assert (await storage.get(later.id)).state == "scheduled"
    assert await storage.next_run_at() == start + 100
    assert await counts(storage) == {"pending": 1, "scheduled": 1}
    assert (await lease_one(storage, clock.now())).id == soon.id


async def test_promote_due_respects_its_limit(storage, make, clock):
    await put(storage, *make.many(5, delay=1))
    now = clock.advance(2)
    assert await storage.promote_due(now, limit=3) == 3
    assert await counts(storage) == {"pending": 3, "scheduled": 2}
    assert await storage.promote_due(now, limit=3) == 2
    assert await storage.promote_due(now) == 0
    assert await storage.next_run_at() is None


async def test_promote_due_promotes_earliest_first(storage, make, clock):
    late, early = make(delay=20), make(delay=10)
    await put(storage, late, early)
    assert await storage.promote_due(clock.advance(30), limit=1) == 1
    assert (await storage.get(early.id)).state == "pending"
    assert (await storage.get(late.id)).state == "scheduled"


async def test_a_retry_waits_for_its_retry_at(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    await storage.settle([fail(task, retry_at=clock.now() + 60)], clock.now())
    assert await storage.next_run_at() == clock.now() + 60
    assert await storage.promote_due(clock.advance(59)) == 0
    assert await storage.promote_due(clock.advance(1)) == 1
    again = await lease_one(storage, clock.now())
    assert again.id == task.id
    assert again.attempts == 1


async def test_promoted_tasks_keep_priority_order(storage, make, clock):
    low, high = make(delay=5, priority=1), make(delay=5, priority=9)
    plain = make(priority=5)
    await put(storage, low, high, plain)
    await storage.promote_due(clock.advance(5))
    order = [(await lease_one(storage, clock.now())).id for _ in range(3)]
    assert order == [high.id, plain.id, low.id]
