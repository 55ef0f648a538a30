"""lease and extend with a visibility override (remote workers choose their lease length)."""

from __future__ import annotations

import math

import pytest

from .helpers import lease_one, put


async def test_a_lease_may_choose_its_own_visibility(storage, make, clock):
    await put(storage, *make.many(2, visibility_timeout=30))
    leased = await storage.lease("q", 2, "remote", clock.now(), visibility=7.5)
    assert [t.lease_expires_at for t in leased] == [clock.now() + 7.5] * 2
    for t in leased:
        assert (await storage.get(t.id)).lease_expires_at == clock.now() + 7.5


async def test_the_override_holds_for_that_lease_only(storage, make, clock):
    await put(storage, make(visibility_timeout=30))
    task = await storage.lease("q", 1, "remote", clock.now(), visibility=5)
    [task] = task
    # Without an override, an extension goes back to the task's own timeout.
    later = clock.advance(2)
    assert await storage.extend([(task.id, task.lease_token)], later) == [True]
    assert (await storage.get(task.id)).lease_expires_at == later + 30
    assert (await storage.get(task.id)).visibility_timeout == 30


async def test_a_short_override_expires_and_is_reclaimed(storage, make, clock):
    await put(storage, make(visibility_timeout=300))
    await storage.lease("q", 1, "remote", clock.now(), visibility=2)
    assert await storage.reclaim_expired(clock.advance(1)) == []
    [back] = await storage.reclaim_expired(clock.advance(1.5))
    assert back.state == "pending"
    assert back.error["kind"] == "lost"


async def test_extend_may_choose_the_extension(storage, make, clock):
    await put(storage, *make.many(2, visibility_timeout=30))
    a, b = await storage.lease("q", 2, "w1", clock.now())
    later = clock.advance(10)
    held = await storage.extend(
        [(a.id, a.lease_token), (b.id, "stale")], later, visibility=120
    )
    assert held == [True, False]
    assert (await storage.get(a.id)).lease_expires_at == later + 120
    assert (await storage.get(b.id)).lease_expires_at == b.lease_expires_at


async def test_extend_may_shorten_a_lease(storage, make, clock):
    await put(storage, make(visibility_timeout=300))
    task = await lease_one(storage, clock.now())
    assert await storage.extend([(task.id, task.lease_token)], clock.now(), visibility=1) == [True]
    [back] = await storage.reclaim_expired(clock.advance(1.5))
    assert back.id == task.id


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
async def test_a_visibility_that_is_not_a_positive_number_is_refused(storage, make, clock, bad):
    await put(storage, make())
    with pytest.raises(ValueError, match="visibility"):
        await storage.lease("q", 1, "w1", clock.now(), visibility=bad)
    task = await lease_one(storage, clock.now())
    with pytest.raises(ValueError, match="visibility"):
        await storage.extend([(task.id, task.lease_token)], clock.now(), visibility=bad)
    assert (await storage.get(task.id)).lease_expires_at == task.lease_expires_at
