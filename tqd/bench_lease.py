"""``tqd bench --lease-scaling``: does leasing stay cheap as the store grows?

Fills a store with pending tasks of one queue (the deepest index a lease can
walk), then times leasing one task (and settling it) a few thousand times,
first with 10,000 tasks stored and then with 1,000,000. Runs in-process
against the storage layer, so the HTTP layer does not blur the figure.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

from tqd.config import Config
from tqd.models import Outcome
from tqd.runtime.catalog import Catalog, NewTask
from tqd.storage.base import Storage
from tqd.storage.factory import create_storage

SIZES = (10_000, 1_000_000)
SAMPLES = 2000
FILL_BATCH = 5000


async def _fill(storage: Storage, catalog: Catalog, queue: str, count: int) -> None:
    now = time.time()
    for start in range(0, count, FILL_BATCH):
        n = min(FILL_BATCH, count - start)
        await storage.enqueue([catalog.build(NewTask("tqd.noop", queue=queue), now) for _ in range(n)])


async def _time_leases(storage: Storage, queue: str) -> dict[str, float]:
    lease_us: list[float] = []
    for _ in range(SAMPLES):
        now = time.time()
        started = time.perf_counter()
        [task] = await storage.lease(queue, 1, "bench", now)
        lease_us.append((time.perf_counter() - started) * 1e6)
        await storage.settle(
            [Outcome(task_id=task.id, token=task.lease_token or "", kind="complete", result=b"null",
                     queue=task.queue, name=task.name)],
            now,
        )
    lease_us.sort()
    return {
        "lease_us_mean": round(statistics.fmean(lease_us), 1),
        "lease_us_p50": round(lease_us[len(lease_us) // 2], 1),
        "lease_us_p99": round(lease_us[int(len(lease_us) * 0.99)], 1),
    }


async def _measure(url: str) -> dict:
    storage = create_storage(url)
    await storage.open()
    catalog = Catalog(Config())
    queue = f"lease-scaling-{int(time.time())}"
    result: dict = {"storage": url.split("@")[-1], "samples": SAMPLES}
    stored = 0
    try:
        for size in SIZES:
            await _fill(storage, catalog, queue, size - stored)
            stored = size
            result[str(size)] = await _time_leases(storage, queue)
        small, large = (result[str(s)]["lease_us_mean"] for s in SIZES)
        result["ratio_1m_to_10k"] = round(large / small, 3)
        await storage.purge(queue, "pending")
        await storage.purge(queue, "completed")
    finally:
        await storage.close()
    return result


def measure_lease_scaling(url: str | None) -> dict:
    """Run the measurement on ``url`` (default: SQLite in a temporary directory)."""
    if url is None:
        with tempfile.TemporaryDirectory(prefix="tqd-lease-") as tmp:
            return _run(f"sqlite://{tmp}/lease.db")
    return _run(url)


def _run(url: str) -> dict:
    try:
        import uvloop

        return uvloop.run(_measure(url))
    except ImportError:  # pragma: no cover
        return asyncio.run(_measure(url))
