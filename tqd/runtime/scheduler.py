"""The scheduler: makes delayed and retrying tasks pending when they are due.

It sleeps until the earliest ``run_at`` in the store (never longer than its
interval) and is woken early when a task is scheduled, so a delay of 50 ms
starts after about 50 ms rather than at the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tqd.clock import Clock
from tqd.models import Change, QueueChange
from tqd.runtime.role import Role
from tqd.storage.base import BULK_CHUNK, Storage

log = logging.getLogger("tqd.scheduler")


class Scheduler(Role):
    """Promotes due scheduled tasks each round."""

    name = "scheduler"

    def __init__(self, storage: Storage, clock: Clock, interval: float = 1.0) -> None:
        super().__init__(clock, interval)
        self.storage = storage

    def on_changes(self, changes: Sequence[Change | QueueChange]) -> None:
        """Storage listener: a newly scheduled task may be due before the next round."""
        for c in changes:
            if type(c) is Change and c.state == "scheduled":
                self.wake()
                return

    async def run_once(self, now: float) -> float | None:
        while await self.storage.promote_due(now, BULK_CHUNK) == BULK_CHUNK:
            pass
        next_at = await self.storage.next_run_at()
        if next_at is None:
            return None
        return max(0.001, next_at - now)
