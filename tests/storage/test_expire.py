"""expire_finished: the janitor deletes finished tasks after their retention."""

from __future__ import annotations

import pytest

from .helpers import complete, counts, fail, lease_one, put


async def _finish(storage, clock, kind):
    leased = await lease_one(storage, clock.now())
    if kind == "completed":
        await storage.settle([complete(leased)], clock.now())
    elif kind == "failed":
        await storage.settle([fail(leased)], clock.now())
    else:
        await storage.cancel(leased.id, clock.now())
    return leased.id


async def test_expire_deletes_by_state_and_finish_time(storage, make, clock):
    await put(storage, *make.many(6))
    t0 = clock.now()
    old_done = await _finish(storage, clock, "completed")
    old_failed = await _finish(storage, clock, "failed")
    old_cancelled = await _finish(storage, clock, "cancelled")
    clock.advance(100)
    new_done = await _finish(storage, clock, "completed")
    assert await storage.expire_finished("completed", t0 + 50) == 1
    assert await storage.get(old_done) is None
    assert await storage.get(new_done) is not None
    assert await storage.get(old_failed) is not None
    assert await storage.get(old_cancelled) is not None
    assert await storage.expire_finished("failed", t0 + 50) == 1
    assert await storage.expire_finished("cancelled", t0 + 50) == 1
    assert await counts(storage) == {"pending": 2, "completed": 1}


async def test_expire_uses_finished_before_strictly(storage, make, clock):
    await put(storage, make())
    done = await _finish(storage, clock, "completed")
    assert await storage.expire_finished("completed", clock.now()) == 0
    assert await storage.expire_finished("completed", clock.now() + 0.001) == 1
    assert await storage.get(done) is None


async def test_expire_respects_its_limit(storage, make, clock):
    await put(storage, *make.many(5))
    for _ in range(5):
        await _finish(storage, clock, "completed")
    later = clock.advance(10)
    assert await storage.expire_finished("completed", later, limit=2) == 2
    assert await counts(storage) == {"completed": 3}
    assert await storage.expire_finished("completed", later, limit=10) == 3
    assert await storage.expire_finished("completed", later) == 0


async def test_expire_never_touches_unfinished_tasks(storage, make, clock):
    await put(storage, make(), make(delay=1))
    await lease_one(storage, clock.now())
    for state in ("completed", "failed", "cancelled"):
        assert await storage.expire_finished(state, clock.advance(1000)) == 0
    assert await counts(storage) == {"processing": 1, "scheduled": 1}


@pytest.mark.parametrize("state", ["pending", "scheduled", "processing", "bogus"])
async def test_expire_of_an_unfinished_state_is_refused(storage, state):
    with pytest.raises(ValueError):
        await storage.expire_finished(state, 0.0)
