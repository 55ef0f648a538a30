"""The shape every background role shares.

A role is a constructor and ``run_once(now)``, which does one round of work
and returns how many seconds until it wants to run again (None: its regular
interval). ``Role.run`` repeats it until stopped, logging failures without
ever dying, and can be woken early with ``wake()``. Tests call ``run_once``
directly with a FakeClock's time.
"""

from __future__ import annotations

import asyncio
import logging

from tqd.clock import Clock
from tqd.logs import log_failure

log = logging.getLogger("tqd.roles")


class Role:
    """Base of the supervisor, scheduler, heartbeat and janitor."""

    name = "role"

    def __init__(self, clock: Clock, interval: float) -> None:
        self.clock = clock
        self.interval = interval
        self._wake = asyncio.Event()
        self._stopped = False
        self.failures = 0

    async def run_once(self, now: float) -> float | None:
        """Do one round of work; return seconds until the next (None: interval)."""
        raise NotImplementedError

    def wake(self) -> None:
        """Run the next round now rather than at the end of the wait."""
        self._wake.set()

    def stop(self) -> None:
        """Make ``run`` return after the round in progress."""
        self._stopped = True
        self._wake.set()

    async def run(self) -> None:
        """Run rounds until stopped; a failing round is logged and retried with backoff."""
        while not self._stopped:
            self._wake.clear()
            try:
                delay = await self.run_once(self.clock.now())
                if self.failures:
                    log.info("%s works again after %d failures", self.name, self.failures)
                self.failures = 0
            except Exception as err:
                self.failures += 1
                delay = min(self.interval, 0.1 * 2 ** min(self.failures, 8))
                if self.failures == 1 or self.failures % 30 == 0:
                    log_failure(log, "%s failed, retrying in %.1fs", self.name, delay,
                                exc=err, level=logging.WARNING)
            wait = self.interval if delay is None else max(0.0, min(delay, self.interval))
            if self._stopped:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass
