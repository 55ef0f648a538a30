"""Lease latency with and without fair groups: ``python -m tests.storage.redis.measure_lease [N]``.

Starts a private redis-server (never the machine's shared one) and times
leases of 1 and of 10 tasks in three queues: N ungrouped tasks (the fast
path), N tasks of one group plus 10 of a small group, and N tasks spread
over 1,000 groups. Every leased task is completed at once, so the queue
stays at N tasks and concurrency limits do not bind.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.redis_server import start_server
from tqd.ids import IdGenerator
from tqd.models import Outcome, QueueLimits, Task
from tqd.storage.redis import RedisStorage

ROUNDS = 300


async def fill(s: RedisStorage, queue: str, n: int, group_of, now: float) -> None:
    ids = IdGenerator()
    for done in range(0, n, 1000):
        batch = [
            Task(id=ids.new(now), name="noop", queue=queue, created_at=now, group=group_of(done + i))
            for i in range(min(1000, n - done))
        ]
        await s.enqueue(batch)


async def time_leases(s: RedisStorage, queue: str, size: int, now: float) -> tuple[float, list]:
    """Mean milliseconds per lease of ``size`` (each followed by its settle)."""
    spent, seen = 0.0, []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        leased = await s.lease(queue, size, "w", now)
        spent += time.perf_counter() - start
        seen += [t.group for t in leased]
        await s.settle(
            [Outcome(task_id=t.id, token=t.lease_token, kind="complete") for t in leased], now
        )
    return spent / ROUNDS * 1000, seen


async def measure(url: str, n: int) -> None:
    s = RedisStorage(url)
    await s.open()
    now = 1_800_000_000.0
    await fill(s, "plain", n, lambda i: None, now)
    await fill(s, "burst", n, lambda i: "big", now)
    await fill(s, "burst", 10, lambda i: "small", now)
    await fill(s, "many", n, lambda i: f"tenant-{i % 1000:04d}", now)
    await s.set_limits("capped", QueueLimits(group_concurrency=2), now)
    await fill(s, "capped", n, lambda i: f"tenant-{i % 1000:04d}", now)
    print(f"redis {s.server_version}, {n} tasks per queue, {ROUNDS} leases each")
    for queue in ("plain", "burst", "many", "capped"):
        for size in (1, 10):
            ms, seen = await time_leases(s, queue, size, now)
            note = ""
            if queue == "burst":
                note = f"  (small group served {seen.count('small')} times)"
            print(f"  {queue:7s} lease({size:2d}): {ms:.3f} ms{note}")
    await s.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            asyncio.run(measure(server.url, n))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
