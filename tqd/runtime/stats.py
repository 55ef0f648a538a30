"""The stats recorder: hands the meter's per-second counts to the store.

Once a second it takes what the meter gathered and adds it to the store's
statistics in one call, so the hot path never waits for it and every
process sharing the store contributes its own work. When the store does not
answer, the counts are given back to the meter and sent with the next round.
"""

from __future__ import annotations

from tqd.clock import Clock
from tqd.runtime.meter import Meter
from tqd.runtime.role import Role
from tqd.storage.base import Storage


class StatsRecorder(Role):
    """Each round, records the meter's per-second statistics in the store."""

    name = "stats"

    def __init__(self, storage: Storage, meter: Meter, clock: Clock, interval: float = 1.0) -> None:
        super().__init__(clock, interval)
        self.storage = storage
        self.meter = meter

    async def run_once(self, now: float) -> float | None:
        buckets = self.meter.take_stats()
        if not buckets:
            return None
        try:
            await self.storage.record_stats(buckets, now)
        except BaseException:
            self.meter.give_back(buckets)
            raise
        return None
