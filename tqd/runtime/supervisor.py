"""The supervisor: takes back tasks whose lease expired (their worker is gone)."""

from __future__ import annotations

import logging

from tqd.clock import Clock
from tqd.models import Task
from tqd.runtime.role import Role
from tqd.storage.base import BULK_CHUNK, Storage

log = logging.getLogger("tqd.supervisor")


class Supervisor(Role):
    """Each round, reclaims every expired lease: pending again, or failed when
    the lost attempt was the last (so a task that kills its worker ends)."""

    name = "supervisor"

    def __init__(self, storage: Storage, clock: Clock, interval: float = 1.0) -> None:
        super().__init__(clock, interval)
        self.storage = storage
        self.reclaimed_total = 0

    async def run_once(self, now: float) -> float | None:
        reclaimed: list[Task] = []
        while True:
            batch = await self.storage.reclaim_expired(now, BULK_CHUNK)
            reclaimed.extend(batch)
            if len(batch) < BULK_CHUNK:
                break
        if reclaimed:
            dead = sum(1 for t in reclaimed if t.state == "failed")
            self.reclaimed_total += len(reclaimed)
            log.warning(
                "reclaimed %d tasks whose lease expired (%d back to pending, %d out of attempts)",
                len(reclaimed), len(reclaimed) - dead, dead,
            )
        return None
