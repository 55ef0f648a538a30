"""enqueue: one and many, all or nothing, idempotency keys, delayed tasks."""

from __future__ import annotations

import asyncio

import pytest

from tqd.errors import Conflict

from .helpers import assert_counts_exact, counts, put


async def test_enqueue_one_is_stored_as_given(storage, make):
    task = make("send", payload=b'{"to":"a@b.c"}', priority=5, max_attempts=4)
    [result] = await storage.enqueue([task])
    assert result.created is True
    assert result.task.id == task.id
    stored = await storage.get(task.id)
    assert stored == task
    assert stored.state == "pending"
    assert stored.attempts == 0


async def test_enqueue_many_keeps_the_given_order(storage, make):
    tasks = [make(f"job{i}", queue=f"q{i % 2}") for i in range(10)]
    results = await storage.enqueue(tasks)
    assert [r.task.id for r in results] == [t.id for t in tasks]
    assert all(r.created for r in results)
    for t in tasks:
        assert await storage.get(t.id) == t
    assert await counts(storage, "q0") == {"pending": 5}
    assert await counts(storage, "q1") == {"pending": 5}


async def test_enqueue_nothing_returns_nothing(storage):
    assert await storage.enqueue([]) == []
    assert await storage.queues() == []


async def test_a_duplicate_id_refuses_the_whole_batch(storage, make):
    """All or nothing: one bad task in a batch stores none of the others."""
    existing = make()
    await put(storage, existing)
    fresh = make()
    clash = make(id=existing.id)
    with pytest.raises(Conflict):
        await storage.enqueue([fresh, clash])
    assert await storage.get(fresh.id) is None
    assert await counts(storage) == {"pending": 1}
    await assert_counts_exact(storage)


async def test_a_duplicate_id_inside_one_batch_refuses_it(storage, make):
    first = make(queue="other")
    with pytest.raises(Conflict):
        await storage.enqueue([first, make(id=first.id, queue="other")])
    assert await storage.get(first.id) is None
    assert await storage.list() == ([], None)
    await assert_counts_exact(storage)


async def test_a_refused_batch_frees_its_idempotency_keys(storage, make):
    existing = make()
    await put(storage, existing)
    keyed = make(key="k1")
    with pytest.raises(Conflict):
        await storage.enqueue([keyed, make(id=existing.id)])
    again = make(key="k1")
    [result] = await storage.enqueue([again])
    assert result.created is True
    assert result.task.id == again.id


async def test_a_repeated_key_returns_the_stored_task(storage, make):
    first = make(key="order-17", payload=b"1")
    [r1] = await storage.enqueue([first])
    second = make(key="order-17", payload=b"2")
    [r2] = await storage.enqueue([second])
    assert r1.created is True
    assert r2.created is False
    assert r2.task.id == first.id
    assert r2.task.payload == b"1"
    assert await storage.get(second.id) is None
    assert await counts(storage) == {"pending": 1}


async def test_a_key_matches_whatever_state_the_task_is_in(storage, make, clock):
    first = make(key="k")
    await put(storage, first)
    leased = await storage.lease("q", 1, "w1", clock.now())
    assert [t.id for t in leased] == [first.id]
    [r] = await storage.enqueue([make(key="k")])
    assert r.created is False
    assert r.task.id == first.id
    assert r.task.state == "processing"


async def test_a_key_is_free_again_after_its_task_is_deleted(storage, make):
    first = make(key="k")
    await put(storage, first)
    await storage.delete(first.id)
    again = make(key="k")
    [r] = await storage.enqueue([again])
    assert r.created is True
    assert r.task.id == again.id


async def test_duplicate_keys_inside_one_batch_store_one_task(storage, make):
    a, b, c = make(key="same"), make(key="same"), make(key="other")
    results = await storage.enqueue([a, b, c])
    assert [r.created for r in results] == [True, False, True]
    assert [r.task.id for r in results] == [a.id, a.id, c.id]
    assert await storage.get(b.id) is None
    assert await counts(storage) == {"pending": 2}


async def test_keys_and_no_keys_mix_in_one_batch(storage, make):
    stored = make(key="known")
    await put(storage, stored)
    plain1, keyed, plain2 = make(), make(key="known"), make()
    results = await storage.enqueue([plain1, keyed, plain2])
    assert [r.created for r in results] == [True, False, True]
    assert [r.task.id for r in results] == [plain1.id, stored.id, plain2.id]
    assert await counts(storage) == {"pending": 3}


async def test_concurrent_identical_enqueues_create_one_task(storage, make, events):
    tasks = [make(key="once") for _ in range(50)]
    results = await asyncio.gather(*(storage.enqueue([t]) for t in tasks))
    flat = [r for [r] in results]
    assert sum(r.created for r in flat) == 1
    assert len({r.task.id for r in flat}) == 1
    assert await counts(storage) == {"pending": 1}
    assert len(events) == 1


async def test_a_delayed_task_is_scheduled_until_its_run_at(storage, make, clock):
    task = make(delay=60)
    [r] = await storage.enqueue([task])
    stored = await storage.get(task.id)
    assert stored.state == "scheduled"
    assert stored.run_at == clock.now() + 60
    assert await counts(storage) == {"scheduled": 1}
    assert await storage.lease("q", 10, "w1", clock.now()) == []
    assert r.task.state == "scheduled"


async def test_idempotency_keys_are_scoped_to_their_queue(storage, make):
    """The same key in two queues names two tasks; in one queue, one task."""
    a = make(queue="mail", key="order-7")
    b = make(queue="sms", key="order-7")
    again = make(queue="mail", key="order-7")
    results = await storage.enqueue([a, b])
    assert [r.created for r in results] == [True, True]
    [repeat] = await storage.enqueue([again])
    assert repeat.created is False
    assert repeat.task.id == a.id
    assert await counts(storage, "mail") == {"pending": 1}
    assert await counts(storage, "sms") == {"pending": 1}
