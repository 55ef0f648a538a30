"""Statistics on Redis: one small hash per bucket, with an expiry.

Each process adds its own counts with HINCRBY (script STATS_ADD, one per
bucket, all in one round trip), so buckets sum the work of every process;
Redis deletes a bucket when its retention ends, so the statistics stay
bounded. A hash holds about ten fields, small enough for Redis to keep it
as a compact listpack. Reading a range is one pipelined HGETALL per bucket
(600 for ten minutes, 1440 for a day).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tqd.models import StatsBucket
from tqd.storage.base import STATS_KEEP
from tqd.storage.redis.client import ScriptClient, guarded
from tqd.storage.redis.keys import Keys


def _fields(b: StatsBucket) -> list[Any]:
    out: list[Any] = []
    for field, n in (("e", b.enqueued), ("c", b.completed), ("f", b.failed)):
        if n:
            out += [field, n]
    for i, n in b.latency.items():
        out += [f"h{i}", n]
    return out


async def record(
    scripts: ScriptClient, keys: Keys, buckets: Sequence[StatsBucket], now: float
) -> None:
    """Add each bucket into its per-second and per-minute hash."""
    calls = []
    for b in buckets:
        fields = _fields(b)
        if not fields:
            continue
        for step, keep in STATS_KEEP.items():
            t = b.t - b.t % step
            ttl = int(t + keep - now)
            if ttl > 0:
                calls.append(("STATS_ADD", [keys.stats(step, b.queue, t)], [ttl, *fields]))
    if calls:
        await scripts.run(calls)


async def read(
    redis: Any, keys: Keys, step: int, since: int, until: int, queue: str,
    guard: Callable[[Any], Any] = guarded,
) -> list[StatsBucket]:
    """The non-empty buckets from ``since`` to ``until`` (aligned to ``step``).

    ``guard`` awaits the Redis call (the store passes its outage breaker)."""
    starts = range(since, until + 1, step)
    pipe = redis.pipeline(transaction=False)
    for t in starts:
        pipe.hgetall(keys.stats(step, queue, t))
    found = await guard(pipe.execute())
    out = []
    for t, fields in zip(starts, found, strict=True):
        if not fields:
            continue
        b = StatsBucket(t=t, queue=queue)
        for k, v in fields.items():
            n = int(v)
            if k == b"e":
                b.enqueued = n
            elif k == b"c":
                b.completed = n
            elif k == b"f":
                b.failed = n
            elif k[:1] == b"h":
                b.latency[int(k[1:])] = n
        out.append(b)
    return out
