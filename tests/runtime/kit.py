"""A worker pool on a real store with handlers the test controls."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqd.clock import Clock
from tqd.config import load_config
from tqd.runtime.catalog import Catalog
from tqd.runtime.handlers import HandlerSet, TaskContext
from tqd.runtime.pool import PoolSettings, WorkerPool
from tqd.runtime.progress import ProgressWriter
from tqd.storage.base import Storage


class Blocker:
    """A handler that runs until ``release`` is set and records how each run ended:
    ``"returned"`` or ``"cancelled"`` (it observed CancelledError)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.ended: dict[str, str] = {}

    async def run(self, ctx: TaskContext) -> Any:
        self.started.append(ctx.task_id)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.ended[ctx.task_id] = "cancelled"
            raise
        self.ended[ctx.task_id] = "returned"
        return {"done": ctx.task_id}

    async def close(self) -> None:
        pass


def pool_with(
    store: Storage, clock: Clock, handlers: dict[str, Any], *, concurrency: int = 10,
    worker_id: str = "w-test", progress: ProgressWriter | None = None,
) -> WorkerPool:
    """A WorkerPool (not started) running ``handlers`` by task name."""
    config = load_config(None, env={}, check_paths=False)
    return WorkerPool(
        store,
        Catalog(config),
        HandlerSet(handlers, ThreadPoolExecutor(max_workers=2)),
        PoolSettings(worker_id=worker_id, concurrency=concurrency),
        clock,
        progress,
    )
