"""Queues: declare, counts, pause and resume, purge, redrive."""

from __future__ import annotations

import pytest

from tqd.errors import BadRequest, Conflict, NotFound
from tqd.models import STATES

from .helpers import assert_counts_exact, complete, counts, fail, lease_one, put, release


async def test_declared_queues_exist_with_zero_counts(storage):
    await storage.declare_queues(["emails", "reports"])
    infos = await storage.queues()
    assert [q.name for q in infos] == ["emails", "reports"]
    for info in infos:
        assert info.paused is False
        assert info.counts == dict.fromkeys(STATES, 0)
    assert await storage.queue("emails") == infos[0]


async def test_declaring_again_changes_nothing(storage, make):
    await put(storage, make(queue="emails"))
    await storage.set_paused("emails", True)
    await storage.declare_queues(["emails"])
    await storage.declare_queues([])
    info = await storage.queue("emails")
    assert info.paused is True
    assert info.counts["pending"] == 1


async def test_queues_are_sorted_by_name_and_include_used_ones(storage, make):
    await put(storage, make(queue="zeta"), make(queue="alpha"))
    await storage.declare_queues(["mid"])
    assert [q.name for q in await storage.queues()] == ["alpha", "mid", "zeta"]


async def test_a_never_named_queue_is_not_found(storage):
    with pytest.raises(NotFound):
        await storage.queue("nobody")


async def test_counts_hold_every_state(storage, make):
    await put(storage, make())
    info = await storage.queue("q")
    assert info.counts == {**dict.fromkeys(STATES, 0), "pending": 1}


async def test_pause_and_resume(storage):
    assert await storage.paused_queues() == set()
    info = await storage.set_paused("new", True)  # creates the queue
    assert (info.name, info.paused) == ("new", True)
    await storage.set_paused("other", True)
    assert await storage.paused_queues() == {"new", "other"}
    assert (await storage.queue("new")).paused is True
    await storage.set_paused("new", False)
    assert await storage.paused_queues() == {"other"}
    assert (await storage.queue("new")).paused is False
    await storage.set_paused("new", False)  # resuming twice is harmless
    assert await storage.paused_queues() == {"other"}


async def test_counts_stay_exact_through_every_operation(storage, make, clock):
    """Each kind of operation, with the counts of queue q checked after it."""

    async def check(expected):
        assert await counts(storage) == expected
        await assert_counts_exact(storage)

    a, b, c, d = make(max_attempts=1, visibility_timeout=10), make(), make(), make()
    await put(storage, a, b, c, d)
    await check({"pending": 4})
    [e] = await put(storage, make(delay=5))
    await check({"pending": 4, "scheduled": 1})
    await storage.enqueue([make(key="k")])
    await storage.enqueue([make(key="k")])  # a repeat stores nothing
    await check({"pending": 5, "scheduled": 1})
    with pytest.raises(Conflict):
        await storage.enqueue([make(), make(id=a.id)])  # refused: stores nothing
    await check({"pending": 5, "scheduled": 1})

    _, lb, lc = await storage.lease("q", 3, "w1", clock.now())
    await check({"pending": 2, "scheduled": 1, "processing": 3})
    await storage.extend([(lb.id, lb.lease_token)], clock.now())
    await check({"pending": 2, "scheduled": 1, "processing": 3})
    await storage.settle([complete(lb)], clock.now())
    await check({"pending": 2, "scheduled": 1, "processing": 2, "completed": 1})
    await storage.settle([fail(lc, retry_at=clock.now() + 1)], clock.now())
    await check({"pending": 2, "scheduled": 2, "processing": 1, "completed": 1})
    await storage.settle([complete(lb)], clock.now())  # refused: counts nothing
    await check({"pending": 2, "scheduled": 2, "processing": 1, "completed": 1})
    await storage.promote_due(clock.advance(10))
    await check({"pending": 4, "processing": 1, "completed": 1})
    [ld] = await storage.lease("q", 1, "w2", clock.now())
    await storage.settle([release(ld)], clock.now())
    await check({"pending": 4, "processing": 1, "completed": 1})
    await storage.reclaim_expired(clock.advance(11))  # a had one attempt: failed
    await check({"pending": 4, "completed": 1, "failed": 1})
    await storage.lease("q", 2, "w3", clock.now())
    await storage.reclaim_worker("w3", clock.now())  # attempts left: pending
    await check({"pending": 4, "completed": 1, "failed": 1})
    leased = await storage.lease("q", 1, "w4", clock.now())
    await storage.settle([fail(leased[0])], clock.now())
    await check({"pending": 3, "completed": 1, "failed": 2})

    await storage.cancel(e.id, clock.now())
    await check({"pending": 2, "completed": 1, "failed": 2, "cancelled": 1})
    processing = await lease_one(storage, clock.now())
    await storage.cancel(processing.id, clock.now())
    await check({"pending": 1, "completed": 1, "failed": 2, "cancelled": 2})
    with pytest.raises(Conflict):
        await storage.cancel(processing.id, clock.now())
    await check({"pending": 1, "completed": 1, "failed": 2, "cancelled": 2})
    await storage.retry(e.id, clock.now())
    await check({"pending": 2, "completed": 1, "failed": 2, "cancelled": 1})
    await storage.delete(e.id)
    await check({"pending": 1, "completed": 1, "failed": 2, "cancelled": 1})
    await storage.redrive("q", clock.now())
    await check({"pending": 3, "completed": 1, "cancelled": 1})
    await storage.expire_finished("completed", clock.advance(1))
    await check({"pending": 3, "cancelled": 1})
    await storage.purge("q", "pending")
    await check({"cancelled": 1})
    await storage.purge("q", "cancelled")
    await check({})


async def test_purge_deletes_one_state_of_one_queue(storage, make, clock):
    await put(storage, *make.many(3), make(delay=9), make(queue="other"))
    await lease_one(storage, clock.now())
    assert await storage.purge("q", "pending") == 2
    assert await counts(storage) == {"scheduled": 1, "processing": 1}
    assert await counts(storage, "other") == {"pending": 1}
    assert await storage.purge("q", "pending") == 0
    assert await storage.purge("q", "scheduled") == 1
    assert await storage.purge("nowhere", "failed") == 0
    await assert_counts_exact(storage)


async def test_purge_of_processing_tasks_is_refused(storage, make, clock):
    await put(storage, make())
    await lease_one(storage, clock.now())
    with pytest.raises(BadRequest):
        await storage.purge("q", "processing")
    with pytest.raises(BadRequest):
        await storage.purge("q", "running")
    assert await counts(storage) == {"processing": 1}


async def test_redrive_puts_every_failed_task_back(storage, make, clock):
    await put(storage, *make.many(3, max_attempts=2), make(queue="other", max_attempts=1))
    leased = await storage.lease("q", 3, "w1", clock.now())
    await storage.settle([fail(leased[0]), fail(leased[1]), complete(leased[2])], clock.now())
    await storage.settle([fail(await lease_one(storage, clock.now(), queue="other"))], clock.now())
    assert await storage.redrive("q", clock.now()) == 2
    assert await counts(storage) == {"pending": 2, "completed": 1}
    assert await counts(storage, "other") == {"failed": 1}
    for t in leased[:2]:
        back = await storage.get(t.id)
        assert back.state == "pending"
        assert (back.attempts, back.max_attempts) == (1, 3)  # as retry does
        assert back.finished_at is None
    assert await storage.redrive("q", clock.now()) == 0
