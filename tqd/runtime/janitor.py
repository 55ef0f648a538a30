"""The janitor: deletes finished tasks once their retention has passed."""

from __future__ import annotations

import logging

from tqd.clock import Clock
from tqd.config import RetentionConfig
from tqd.runtime.role import Role
from tqd.storage.base import BULK_CHUNK, Storage

log = logging.getLogger("tqd.janitor")


class Janitor(Role):
    """Each round, expires completed, failed and cancelled tasks by their own retention."""

    name = "janitor"

    def __init__(
        self, storage: Storage, clock: Clock, retention: RetentionConfig, interval: float = 60.0
    ) -> None:
        super().__init__(clock, interval)
        self.storage = storage
        self.retention = retention

    async def run_once(self, now: float) -> float | None:
        removed = 0
        for state in ("completed", "failed", "cancelled"):
            before = now - getattr(self.retention, state)
            while True:
                n = await self.storage.expire_finished(state, before, BULK_CHUNK)
                removed += n
                if n < BULK_CHUNK:
                    break
        if removed:
            log.info("expired %d finished tasks past their retention", removed)
        return None
