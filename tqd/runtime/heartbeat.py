"""The heartbeat: keeps the leases of running tasks alive and registers this process.

A lease is extended when a third of its visibility timeout has passed, so a
task may run far longer than its visibility timeout as long as this process
lives; when the process dies, the leases run out and the supervisor of any
process takes the tasks back.

Every process registers, also one that runs no workers (``worker.enabled =
false``: concurrency 0), so ``GET /v1/workers`` shows every process sharing
the store and ``tqd migrate`` can tell that a store is in use.
"""

from __future__ import annotations

import logging
import os
import socket

from tqd import __version__
from tqd.clock import Clock
from tqd.models import WorkerInfo
from tqd.runtime.pool import WorkerPool
from tqd.runtime.role import Role
from tqd.storage.base import Storage

log = logging.getLogger("tqd.heartbeat")


class Heartbeat(Role):
    """Extends due leases every round and refreshes this process's registration."""

    name = "heartbeat"

    def __init__(
        self,
        storage: Storage,
        pool: WorkerPool | None,
        clock: Clock,
        *,
        interval: float = 5.0,
        worker_ttl: float = 30.0,
        worker_id: str | None = None,
    ) -> None:
        """``worker_id`` names this process when it has no pool."""
        super().__init__(clock, interval)
        self.storage = storage
        self.pool = pool
        self.worker_ttl = worker_ttl
        self.started_at = clock.now()
        self._registered_at = float("-inf")
        if worker_id is None:
            assert pool is not None, "a process without a pool needs a worker_id"
            worker_id = pool.worker_id
        self.info = WorkerInfo(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            started_at=self.started_at,
            concurrency=pool.settings.concurrency if pool is not None else 0,
        )

    async def run_once(self, now: float) -> float | None:
        if self.pool is None:
            await self.register(now)
            return None
        due = self.pool.leases_due(now)
        if due:
            held = await self.storage.extend(due, now)
            self.pool.leases_extended(due, held, now)
        if now - self._registered_at >= self.interval:
            await self.register(now)
        next_extend = self.pool.next_extend_at()
        if next_extend is None:
            return None
        return max(0.01, next_extend - now)

    async def register(self, now: float) -> None:
        """Write this process's registration (running tasks, last heartbeat)."""
        self.info.running = list(self.pool.running) if self.pool is not None else []
        self.info.last_heartbeat = now
        await self.storage.register_worker(self.info, self.worker_ttl, now)
        self._registered_at = now
