"""Unique tasks: while a task of a name holds a unique key (pending,
scheduled or processing, and younger than its unique_until), an enqueue of
the same name and key in the same queue returns it instead of storing
another. Distinct from idempotency keys, which hold regardless of state."""

from __future__ import annotations

import asyncio

from tqd.models import Outcome

from .helpers import assert_counts_exact, complete, counts, fail, lease_one, put


async def enqueue_one(storage, task):
    [result] = await storage.enqueue([task])
    return result


async def test_a_twin_is_not_stored_while_the_first_is_pending(storage, make):
    first = make(unique="k1")
    await put(storage, first)
    result = await enqueue_one(storage, make(unique="k1", payload=b'{"other":1}'))
    assert result.created is False
    assert result.task == first
    assert await counts(storage) == {"pending": 1}
    await assert_counts_exact(storage)


async def test_other_keys_names_and_queues_are_not_twins(storage, make):
    await put(storage, make(unique="k1"))
    for other in (make(unique="k2"), make("other-name", unique="k1"), make(queue="q2", unique="k1"),
                  make()):
        assert (await enqueue_one(storage, other)).created, other


async def test_scheduled_and_processing_tasks_hold_the_key(storage, make, clock):
    delayed = make(delay=60, unique="later")
    running = make(unique="now")
    await put(storage, delayed, running)
    leased = await lease_one(storage, clock.now())
    assert leased.id == running.id
    for twin, holder in ((make(unique="later"), delayed), (make(unique="now"), running)):
        result = await enqueue_one(storage, twin)
        assert not result.created and result.task.id == holder.id


async def test_a_retrying_task_still_holds_the_key(storage, make, clock):
    first = make(unique="k")
    await put(storage, first)
    leased = await lease_one(storage, clock.now())
    await storage.settle([fail(leased, retry_at=clock.now() + 30)], clock.now())
    result = await enqueue_one(storage, make(unique="k"))
    assert not result.created and result.task.id == first.id


async def test_the_key_is_free_once_the_task_finishes(storage, make, clock):
    """Completed, failed for good, cancelled, deleted: each lets the key go."""
    done = make(unique="done")
    dead = make(unique="dead", max_attempts=1)
    gone = make(unique="cancelled")
    deleted = make(unique="deleted")
    await put(storage, done, dead, gone, deleted)
    a = await lease_one(storage, clock.now())
    b = await lease_one(storage, clock.now())
    await storage.settle([complete(a), fail(b)], clock.now())
    await storage.cancel(gone.id, clock.now())
    await storage.delete(deleted.id)
    for key in ("done", "dead", "cancelled", "deleted"):
        assert (await enqueue_one(storage, make(unique=key))).created, key


async def test_the_key_is_free_after_unique_for(storage, make, clock):
    first = make(unique="k", unique_for=10)
    await put(storage, first)
    clock.advance(9.5)
    assert not (await enqueue_one(storage, make(unique="k"))).created
    clock.advance(0.5)  # unique_until is not after the new task's created_at
    assert (await enqueue_one(storage, make(unique="k"))).created
    assert await counts(storage) == {"pending": 2}


async def test_a_lost_task_that_failed_for_good_lets_the_key_go(storage, make, clock):
    await put(storage, make(unique="k", max_attempts=1, visibility_timeout=5))
    await lease_one(storage, clock.now())
    [reclaimed] = await storage.reclaim_expired(clock.advance(6))
    assert reclaimed.state == "failed"
    assert (await enqueue_one(storage, make(unique="k"))).created


async def test_a_reclaimed_task_back_to_pending_still_holds_the_key(storage, make, clock):
    first = make(unique="k", visibility_timeout=5)
    await put(storage, first)
    await lease_one(storage, clock.now())
    [reclaimed] = await storage.reclaim_expired(clock.advance(6))
    assert reclaimed.state == "pending"
    result = await enqueue_one(storage, make(unique="k"))
    assert not result.created and result.task.id == first.id


async def test_a_manual_retry_does_not_take_the_key_again(storage, make, clock):
    first = make(unique="k", max_attempts=1)
    await put(storage, first)
    leased = await lease_one(storage, clock.now())
    await storage.settle([fail(leased)], clock.now())
    revived = await storage.retry(first.id, clock.now())
    assert revived.state == "pending" and revived.unique_until is None
    assert (await enqueue_one(storage, make(unique="k"))).created


async def test_purging_pending_tasks_lets_their_keys_go(storage, make):
    await put(storage, make(unique="k"))
    assert await storage.purge("q", "pending") == 1
    assert (await enqueue_one(storage, make(unique="k"))).created


async def test_twins_within_one_batch(storage, make):
    a, b, c = make(unique="k"), make(unique="k"), make(unique="other")
    results = await storage.enqueue([a, b, c])
    assert [r.created for r in results] == [True, False, True]
    assert results[1].task.id == a.id
    assert await counts(storage) == {"pending": 2}
    await assert_counts_exact(storage)


async def test_an_idempotency_key_is_checked_first(storage, make):
    keyed = make(key="idem")
    holder = make(unique="u")
    await put(storage, keyed, holder)
    result = await enqueue_one(storage, make(key="idem", unique="u"))
    assert not result.created and result.task.id == keyed.id


async def test_the_key_is_kept_on_the_task(storage, make, clock):
    task = make(unique="k", unique_for=42)
    await put(storage, task)
    stored = await storage.get(task.id)
    assert stored.unique_key == "k"
    assert stored.unique_until == clock.now() + 42


async def test_fifty_concurrent_enqueues_store_one(storage, make):
    tasks = [make(unique="burst", payload=f'{{"n":{i}}}'.encode()) for i in range(50)]
    results = await asyncio.gather(*(storage.enqueue([t]) for t in tasks))
    created = [r for [r] in results if r.created]
    assert len(created) == 1
    assert {r.task.id for [r] in results} == {created[0].task.id}
    assert await counts(storage) == {"pending": 1}


async def test_fifty_concurrent_enqueues_over_two_handles_store_one(storage, new_storage, make):
    """Two handles stand for two processes (shared stores only)."""
    from tqd.storage.base import SHARED

    if SHARED not in storage.capabilities:
        return  # a second handle is refused (test_life); the single-handle test covers it
    other = new_storage()
    await other.open()
    try:
        tasks = [make(unique="burst") for _ in range(50)]
        results = await asyncio.gather(
            *((storage if i % 2 else other).enqueue([t]) for i, t in enumerate(tasks))
        )
        created = [r for [r] in results if r.created]
        assert len(created) == 1
        assert {r.task.id for [r] in results} == {created[0].task.id}
        assert await counts(storage) == {"pending": 1}
    finally:
        await other.close()


async def test_a_settle_with_a_stale_token_keeps_the_key(storage, make, clock):
    """Only the real end of the task lets the key go, not a refused settle."""
    first = make(unique="k")
    await put(storage, first)
    leased = await lease_one(storage, clock.now())
    stale = Outcome(task_id=leased.id, token="0" * 12 + ":q", kind="complete", result=b"1")
    assert await storage.settle([stale], clock.now()) == [False]
    assert not (await enqueue_one(storage, make(unique="k"))).created
