"""Queue limits kept in the store: concurrency and rate, applied by the lease."""

from __future__ import annotations

import pytest

from tqd.errors import BadRequest, LimitsChanged
from tqd.models import NO_LIMITS, QueueChange, QueueLimits

from .helpers import complete, fail, put, release, two_handles


async def test_a_queue_starts_without_limits(storage, make):
    await put(storage, make())
    info = await storage.queue("q")
    assert info.limits == NO_LIMITS
    assert info.config_digest is None


async def test_set_limits_creates_the_queue_and_shows_them(storage, clock):
    limits = QueueLimits(concurrency=3, rate_limit=10, rate_interval=60.0, rate_burst=4,
                         group_concurrency=2)
    info = await storage.set_limits("new", limits, clock.now())
    assert info.name == "new"
    assert info.limits == limits
    assert info.paused is False
    assert [q.limits for q in await storage.queues() if q.name == "new"] == [limits]


async def test_limits_and_digest_survive_a_reopen(new_storage, clock):
    first = new_storage()
    await first.open()
    limits = QueueLimits(concurrency=5, rate_limit=7)
    await first.set_limits("q", limits, clock.now(), config_digest="abc")
    await first.close()
    second = new_storage()
    await second.open()
    try:
        info = await second.queue("q")
        assert (info.limits, info.config_digest) == (limits, "abc")
    finally:
        await second.close()


async def test_a_digest_of_none_keeps_the_stored_one(storage, clock):
    await storage.set_limits("q", QueueLimits(concurrency=1), clock.now(), config_digest="d1")
    info = await storage.set_limits("q", QueueLimits(concurrency=2), clock.now())
    assert (info.limits.concurrency, info.config_digest) == (2, "d1")
    info = await storage.set_limits("q", NO_LIMITS, clock.now(), config_digest="d2")
    assert (info.limits, info.config_digest) == (NO_LIMITS, "d2")


async def test_set_limits_with_expected_is_a_compare_and_set(storage, clock):
    # A queue never named holds NO_LIMITS.
    first = QueueLimits(concurrency=2, rate_limit=5, rate_interval=2.5)
    info = await storage.set_limits("q", first, clock.now(), expected=NO_LIMITS)
    assert info.limits == first
    second = QueueLimits(concurrency=3, rate_limit=5, rate_interval=2.5)
    info = await storage.set_limits("q", second, clock.now(), expected=first)
    assert info.limits == second
    # The stored limits are no longer `first`: refused, nothing changes.
    with pytest.raises(LimitsChanged):
        await storage.set_limits("q", QueueLimits(concurrency=9), clock.now(), expected=first)
    assert (await storage.queue("q")).limits == second
    with pytest.raises(LimitsChanged):
        await storage.set_limits("other", QueueLimits(concurrency=9), clock.now(), expected=first)


async def test_a_refused_compare_and_set_emits_no_change(storage, events, clock):
    await storage.set_limits("q", QueueLimits(concurrency=1), clock.now())
    events.clear()
    with pytest.raises(LimitsChanged):
        await storage.set_limits("q", QueueLimits(concurrency=2), clock.now(), expected=NO_LIMITS)
    await storage.set_limits("q", QueueLimits(concurrency=3), clock.now(),
                             expected=QueueLimits(concurrency=1))
    assert [c for c in events if isinstance(c, QueueChange)] == [QueueChange("q", "limits")]


async def test_limits_and_pause_are_independent(storage, clock):
    await storage.set_limits("q", QueueLimits(concurrency=2), clock.now())
    info = await storage.set_paused("q", True)
    assert (info.paused, info.limits.concurrency) == (True, 2)
    info = await storage.set_limits("q", QueueLimits(concurrency=4), clock.now())
    assert (info.paused, info.limits.concurrency) == (True, 4)


@pytest.mark.parametrize("limits, field", [
    (QueueLimits(concurrency=0), "concurrency"),
    (QueueLimits(rate_limit=-1), "rate_limit"),
    (QueueLimits(rate_limit=5, rate_interval=0.0), "rate_interval"),
    (QueueLimits(rate_burst=0), "rate_burst"),
    (QueueLimits(group_concurrency=0), "group_concurrency"),
])
async def test_invalid_limits_are_refused_naming_the_field(storage, clock, limits, field):
    with pytest.raises(BadRequest, match=field):
        await storage.set_limits("q", limits, clock.now())


async def test_setting_limits_emits_a_queue_change(storage, events, clock):
    await storage.set_limits("q", QueueLimits(concurrency=1), clock.now())
    assert QueueChange("q", "limits") in events


# -- concurrency ---------------------------------------------------------------


async def test_concurrency_caps_processing_tasks_of_the_queue(storage, make, clock):
    await put(storage, *make.many(5))
    await storage.set_limits("q", QueueLimits(concurrency=2), clock.now())
    first = await storage.lease("q", 10, "w1", clock.now())
    assert len(first) == 2
    assert first.limited == "concurrency"
    second = await storage.lease("q", 10, "w2", clock.now())
    assert list(second) == [] and second.limited == "concurrency"
    await storage.settle([complete(first[0])], clock.now())
    third = await storage.lease("q", 10, "w2", clock.now())
    assert len(third) == 1


async def test_concurrency_holds_across_handles_on_one_store(new_storage, make, clock):
    async with two_handles(new_storage) as (a, b):
        await put(a, *make.many(6))
        await a.set_limits("q", QueueLimits(concurrency=3), clock.now())
        got_a = await a.lease("q", 2, "wa", clock.now())
        got_b = await b.lease("q", 5, "wb", clock.now())
        assert (len(got_a), len(got_b)) == (2, 1)
        assert got_b.limited == "concurrency"


async def test_every_way_out_of_processing_frees_a_slot(storage, make, clock):
    await put(storage, *make.many(6, visibility_timeout=10.0))
    await storage.set_limits("q", QueueLimits(concurrency=1), clock.now())

    async def one():
        leased = await storage.lease("q", 5, "w", clock.now())
        assert len(leased) == 1
        return leased[0]

    t = await one()
    await storage.settle([fail(t, retry_at=clock.now() + 100)], clock.now())
    t = await one()
    await storage.settle([release(t)], clock.now())
    t = await one()
    await storage.cancel(t.id, clock.now())
    t = await one()
    clock.advance(11)
    assert [r.id for r in await storage.reclaim_expired(clock.now())] == [t.id]
    t = await one()
    await storage.settle([complete(t)], clock.now())
    assert len(await storage.lease("q", 5, "w", clock.now())) == 1


async def test_a_lower_concurrency_leases_nothing_until_enough_finish(storage, make, clock):
    await put(storage, *make.many(5))
    leased = await storage.lease("q", 3, "w", clock.now())
    await storage.set_limits("q", QueueLimits(concurrency=1), clock.now())
    assert list(await storage.lease("q", 3, "w", clock.now())) == []
    await storage.settle([complete(leased[0]), complete(leased[1])], clock.now())
    assert list(await storage.lease("q", 3, "w", clock.now())) == []
    await storage.settle([complete(leased[2])], clock.now())
    assert len(await storage.lease("q", 3, "w", clock.now())) == 1


async def test_an_unlimited_lease_says_nothing_limited_it(storage, make, clock):
    await put(storage, *make.many(2))
    leased = await storage.lease("q", 5, "w", clock.now())
    assert len(leased) == 2
    assert leased.limited is None


# -- rate ------------------------------------------------------------------------


async def test_the_rate_bucket_starts_full_and_refills_over_time(storage, make, clock):
    await put(storage, *make.many(20))
    await storage.set_limits("q", QueueLimits(rate_limit=4, rate_interval=2.0), clock.now())
    first = await storage.lease("q", 10, "w", clock.now())
    assert len(first) == 4
    assert first.limited == "rate"
    assert first.retry_in == pytest.approx(0.5, abs=0.01)  # 2 tokens per second
    clock.advance(0.25)
    none = await storage.lease("q", 10, "w", clock.now())
    assert list(none) == [] and none.limited == "rate"
    assert none.retry_in == pytest.approx(0.25, abs=0.01)
    clock.advance(0.25)
    assert len(await storage.lease("q", 10, "w", clock.now())) == 1
    clock.advance(100)  # refills up to the burst only
    assert len(await storage.lease("q", 10, "w", clock.now())) == 4


async def test_a_burst_larger_than_the_rate(storage, make, clock):
    await put(storage, *make.many(20))
    await storage.set_limits("q", QueueLimits(rate_limit=1, rate_burst=6), clock.now())
    assert len(await storage.lease("q", 10, "w", clock.now())) == 6
    clock.advance(3)
    assert len(await storage.lease("q", 10, "w", clock.now())) == 3


async def test_an_empty_queue_takes_no_tokens(storage, make, clock):
    await storage.set_limits("q", QueueLimits(rate_limit=3, rate_interval=60.0), clock.now())
    for _ in range(5):
        empty = await storage.lease("q", 10, "w", clock.now())
        assert list(empty) == [] and empty.limited is None
    await put(storage, *make.many(2))
    got = await storage.lease("q", 1, "w", clock.now())
    assert len(got) == 1 and got.limited is None  # asked for 1, got it
    assert len(await storage.lease("q", 10, "w", clock.now())) == 1


async def test_the_rate_holds_across_handles(new_storage, make, clock):
    async with two_handles(new_storage) as (a, b):
        await put(a, *make.many(10))
        await a.set_limits("q", QueueLimits(rate_limit=5, rate_interval=10.0), clock.now())
        assert len(await a.lease("q", 3, "wa", clock.now())) == 3
        got = await b.lease("q", 10, "wb", clock.now())
        assert len(got) == 2 and got.limited == "rate"


async def test_concurrency_and_rate_together_take_the_smaller(storage, make, clock):
    await put(storage, *make.many(10))
    await storage.set_limits("q", QueueLimits(concurrency=2, rate_limit=5), clock.now())
    got = await storage.lease("q", 10, "w", clock.now())
    assert len(got) == 2 and got.limited == "concurrency"
    await storage.settle([complete(t) for t in got], clock.now())
    # One token is left after the two leases above: the rate binds now.
    second = await storage.lease("q", 10, "w", clock.now())
    assert len(second) == 2
    await storage.settle([complete(t) for t in second], clock.now())
    third = await storage.lease("q", 10, "w", clock.now())
    assert len(third) == 1 and third.limited == "rate"
