"""Changing one task by hand: get, cancel, retry, delete."""

from __future__ import annotations

import pytest

from tqd.errors import Conflict, NotFound

from .helpers import complete, counts, fail, lease_one, put

MISSING = "0" * 20


async def _in_state(storage, make, clock, state, **kwargs):
    """A stored task of queue ``q`` brought to ``state`` through the contract."""
    if state == "scheduled":
        [task] = await put(storage, make(delay=60, **kwargs))
        return task
    [task] = await put(storage, make(**kwargs))
    if state == "pending":
        return task
    leased = await lease_one(storage, clock.now())
    if state == "processing":
        return leased
    if state == "completed":
        await storage.settle([complete(leased)], clock.now())
    elif state == "failed":
        await storage.settle([fail(leased)], clock.now())
    elif state == "cancelled":
        await storage.cancel(task.id, clock.now())
    return await storage.get(task.id)


async def test_get_of_a_missing_task_is_none(storage):
    assert await storage.get(MISSING) is None


@pytest.mark.parametrize("state", ["pending", "scheduled"])
async def test_cancel_a_waiting_task(storage, make, clock, state):
    task = await _in_state(storage, make, clock, state)
    now = clock.advance(1)
    cancelled = await storage.cancel(task.id, now)
    assert cancelled.state == "cancelled"
    assert cancelled.finished_at == now
    assert await storage.get(task.id) == cancelled
    assert await counts(storage) == {"cancelled": 1}
    assert await storage.promote_due(clock.advance(100)) == 0
    assert await storage.lease("q", 1, "w1", clock.now()) == []


async def test_cancel_a_processing_task_revokes_its_lease(storage, make, clock):
    leased = await _in_state(storage, make, clock, "processing")
    cancelled = await storage.cancel(leased.id, clock.now())
    assert cancelled.state == "cancelled"
    assert cancelled.lease_token is None
    assert await counts(storage) == {"cancelled": 1}
    assert await storage.extend([(leased.id, leased.lease_token)], clock.now()) == [False]
    assert await storage.settle([complete(leased)], clock.now()) == [False]
    assert await storage.settle([fail(leased, retry_at=clock.now())], clock.now()) == [False]
    assert (await storage.get(leased.id)).state == "cancelled"
    assert await storage.reclaim_expired(clock.advance(1000)) == []
    assert await storage.reclaim_worker("w1", clock.now()) == []
    assert (await storage.get(leased.id)).state == "cancelled"


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
async def test_cancel_a_finished_task_is_a_conflict(storage, make, clock, state):
    task = await _in_state(storage, make, clock, state)
    with pytest.raises(Conflict):
        await storage.cancel(task.id, clock.now())
    assert (await storage.get(task.id)) == task
    assert await counts(storage) == {state: 1}


async def test_cancel_a_missing_task_is_not_found(storage, clock):
    with pytest.raises(NotFound):
        await storage.cancel(MISSING, clock.now())


@pytest.mark.parametrize("state", ["failed", "cancelled"])
async def test_retry_puts_the_task_back_with_a_fresh_budget(storage, make, clock, state):
    task = await _in_state(storage, make, clock, state, max_attempts=3)
    retried = await storage.retry(task.id, clock.advance(1))
    assert retried.state == "pending"
    assert retried.attempts == task.attempts
    assert retried.max_attempts == task.attempts + 3
    assert retried.attempt_budget == 3
    assert retried.finished_at is None
    assert retried.errors == task.errors  # history is kept
    assert await storage.get(task.id) == retried
    assert await counts(storage) == {"pending": 1}
    assert (await lease_one(storage, clock.now())).id == task.id


async def test_retry_after_a_lost_last_attempt(storage, make, clock):
    await put(storage, make(max_attempts=1, visibility_timeout=5))
    leased = await lease_one(storage, clock.now())
    [dead] = await storage.reclaim_expired(clock.advance(6))
    assert dead.state == "failed"
    retried = await storage.retry(leased.id, clock.now())
    assert (retried.attempts, retried.max_attempts) == (1, 2)


@pytest.mark.parametrize("state", ["pending", "scheduled", "processing", "completed"])
async def test_retry_in_other_states_is_a_conflict(storage, make, clock, state):
    task = await _in_state(storage, make, clock, state)
    with pytest.raises(Conflict):
        await storage.retry(task.id, clock.now())
    assert (await storage.get(task.id)) == task
    assert await counts(storage) == {state: 1}


async def test_retry_a_missing_task_is_not_found(storage, clock):
    with pytest.raises(NotFound):
        await storage.retry(MISSING, clock.now())


@pytest.mark.parametrize("state", ["pending", "scheduled", "completed", "failed", "cancelled"])
async def test_delete_removes_a_task(storage, make, clock, state):
    task = await _in_state(storage, make, clock, state)
    keep = make(queue="q")
    await put(storage, keep)
    await storage.delete(task.id)
    assert await storage.get(task.id) is None
    assert await storage.get(keep.id) is not None
    assert await counts(storage) == {"pending": 1}
    with pytest.raises(NotFound):
        await storage.delete(task.id)


async def test_delete_a_processing_task_is_a_conflict(storage, make, clock):
    leased = await _in_state(storage, make, clock, "processing")
    with pytest.raises(Conflict):
        await storage.delete(leased.id)
    assert await storage.get(leased.id) == leased
    assert await storage.settle([complete(leased)], clock.now()) == [True]


async def test_delete_a_missing_task_is_not_found(storage):
    with pytest.raises(NotFound):
        await storage.delete(MISSING)
