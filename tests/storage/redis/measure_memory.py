"""Bytes of Redis memory per queued task: ``python -m tests.storage.redis.measure_memory [N]``.

Starts a private redis-server (never the machine's shared one), enqueues N
tasks (default 100,000) with an empty payload in batches of 1,000 and prints
INFO used_memory before and after.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from redis.asyncio import Redis

from tests.helpers.redis_server import start_server
from tqd.ids import IdGenerator
from tqd.models import Task
from tqd.storage.redis import RedisStorage


async def measure(url: str, n: int) -> float:
    """Enqueue ``n`` tasks on ``url`` and return the bytes each one took."""
    raw = Redis.from_url(url)
    s = RedisStorage(url)
    await s.open()
    ids, now = IdGenerator(), 1_800_000_000.0
    await s.enqueue([Task(id=ids.new(now), name="noop", queue="default", created_at=now)])
    before = (await raw.info("memory"))["used_memory"]
    for done in range(0, n, 1000):
        batch = min(1000, n - done)
        tasks = [
            Task(id=ids.new(now), name="noop", queue="default", created_at=now)
            for _ in range(batch)
        ]
        await s.enqueue(tasks)
    after = (await raw.info("memory"))["used_memory"]
    print(f"redis {s.server_version}: {n} tasks, used_memory {before} -> {after}")
    await s.close()
    await raw.aclose()
    return (after - before) / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            per_task = asyncio.run(measure(server.url, n))
        finally:
            server.stop()
    print(f"{per_task:.1f} bytes per queued task")


if __name__ == "__main__":
    main()
