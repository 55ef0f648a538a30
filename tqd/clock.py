"""Time as a dependency.

Storage operations and background roles take ``now`` from a Clock instead of
calling ``time.time()`` themselves, so tests can drive time with FakeClock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Something that tells the time in seconds since the Unix epoch."""

    def now(self) -> float:
        """Wall-clock time (UTC epoch seconds); stored in tasks."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes back; for measuring intervals."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to; both readings advance together."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` and return the new ``now``."""
        if seconds < 0:
            raise ValueError("a FakeClock does not go back")
        self._now += seconds
        self._mono += seconds
        return self._now
