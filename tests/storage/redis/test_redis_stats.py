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
