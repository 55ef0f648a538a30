"""More commands at once than the client keeps connections: they wait for a
free connection instead of failing (redis-py 8's default pool raises "Too many
connections" past 100), and the client never opens more than its cap."""

from __future__ import annotations

import asyncio

from tests.storage.helpers import TaskMaker, put
from tqd.clock import FakeClock
from tqd.storage.redis.client import MAX_CONNECTIONS


async def test_a_burst_beyond_the_pool_waits_for_connections(opened, raw):
    clock = FakeClock()
    storage = await opened()
    [task] = await put(storage, TaskMaker(clock)())
    # Leases of many queues at once: each holds a connection for its script.
    calls = [storage.get(task.id) for _ in range(3 * MAX_CONNECTIONS)]
    calls += [storage.lease(f"q{i}", 1, "w", clock.now()) for i in range(MAX_CONNECTIONS)]
    results = await asyncio.gather(*calls)
    assert all(r is not None and r.id == task.id for r in results[: 3 * MAX_CONNECTIONS])
    clients = (await raw.info("clients"))["connected_clients"]
    # This storage's pool, its subscriber, the raw client and other tests'
    # idle handles on the session's server at most.
    assert clients <= MAX_CONNECTIONS + 20
