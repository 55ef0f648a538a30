"""Statistics on a real Redis: one small hash per bucket, with an expiry."""

from __future__ import annotations

from tqd.clock import FakeClock
from tqd.models import StatsBucket
from tqd.storage.base import STATS_KEEP


async def test_each_bucket_is_a_small_hash_that_expires(opened, raw, redis_prefix):
    s = await opened()
    clock = FakeClock()
    now = int(clock.now())
    t = now - now % 60
    b = StatsBucket(t=t + 3, queue="q", enqueued=2, failed=1, latency={12: 4})
    await s.record_stats([b], t + 3.5)
    second = f"{redis_prefix}:stats:1:q:{t + 3}"
    minute = f"{redis_prefix}:stats:60:q:{t}"
    assert await raw.hgetall(second) == {b"e": b"2", b"f": b"1", b"h12": b"4"}
    assert await raw.hgetall(minute) == {b"e": b"2", b"f": b"1", b"h12": b"4"}
    # kept for the retention after the bucket's start, counted from the caller's now
    assert STATS_KEEP[1] - 5 <= await raw.ttl(second) <= STATS_KEEP[1]
    assert STATS_KEEP[60] - 5 <= await raw.ttl(minute) <= STATS_KEEP[60]
    assert await raw.object("encoding", second) == b"listpack"
    assert sorted(await raw.keys(f"{redis_prefix}:stats:*")) == sorted(
        [second.encode(), minute.encode()]
    )


async def test_a_busy_queue_costs_a_bounded_amount_of_memory(opened, raw, redis_prefix):
    """A full day of a busy queue is at most 11 minutes of per-second hashes and
    25 hours of per-minute ones; each is a few hundred bytes."""
    s = await opened()
    t = 1_800_000_000 - 1_800_000_000 % 60
    lat = {i: 3 for i in range(40, 48)}  # a spread of eight latency buckets
    await s.record_stats([StatsBucket(t=t + i, queue="q", enqueued=900, completed=899,
                                      failed=1, latency=lat) for i in range(60)], t + 60)
    second = await raw.memory_usage(f"{redis_prefix}:stats:1:q:{t}")
    minute = await raw.memory_usage(f"{redis_prefix}:stats:60:q:{t}")
    per_queue = second * (STATS_KEEP[1] + 1) + minute * (STATS_KEEP[60] // 60 + 1)
    print(f"\nstats memory: {second} B per second bucket, {minute} B per minute bucket, "
          f"{per_queue / 1e6:.2f} MB per busy queue (and as much for the total)")
    assert second < 400 and minute < 400
