"""Time-ordered task ids.

An id is 20 characters of Crockford base32 holding 96 bits: 48 bits of
milliseconds since the epoch, then 48 bits that start at a random value below 2^47 each
millisecond and count up within it. Ids from one process sort in creation
order; ids from several processes sort by millisecond and practically never
collide (the stores still refuse a duplicate and the caller draws again).
"""

from __future__ import annotations

import os
import random
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LOW_BITS = 48
ID_LENGTH = 20


# Every pair of base32 digits, so an id is ten table look-ups.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _encode(value: int) -> str:
    p = _PAIRS
    return (
        p[value >> 90 & 1023] + p[value >> 80 & 1023] + p[value >> 70 & 1023]
        + p[value >> 60 & 1023] + p[value >> 50 & 1023] + p[value >> 40 & 1023]
        + p[value >> 30 & 1023] + p[value >> 20 & 1023] + p[value >> 10 & 1023]
        + p[value & 1023]
    )


class IdGenerator:
    """Makes ids that increase strictly within this process."""

    def __init__(self) -> None:
        self._last_ms = -1
        self._low = 0
        # Ids need uniqueness, not secrecy: a generator seeded once from the
        # OS costs no system call per id (which on a busy daemon also means
        # no extra hand-over of the GIL).
        self._random = random.Random(os.urandom(16))

    def new(self, now: float | None = None) -> str:
        """Return a new id for a task created at ``now`` (epoch seconds)."""
        ms = int((time.time() if now is None else now) * 1000)
        if ms <= self._last_ms:
            # Same (or an earlier, after a clock step back) millisecond: keep
            # the last one and count up, so order within the process holds.
            ms = self._last_ms
            self._low += 1
            if self._low >= 1 << _LOW_BITS:
                ms += 1
                self._low = self._random.getrandbits(47)
        else:
            self._low = self._random.getrandbits(47)
        self._last_ms = ms
        return _encode((ms << _LOW_BITS) | self._low)


def id_time(task_id: str) -> float:
    """The creation time (epoch seconds, ms precision) encoded in an id."""
    value = 0
    for ch in task_id.upper():
        value = (value << 5) | _ALPHABET.index(ch)
    return (value >> _LOW_BITS) / 1000.0


def is_valid_id(text: str) -> bool:
    """Whether ``text`` has the form of a task id."""
    return len(text) == ID_LENGTH and all(c in _ALPHABET for c in text.upper())
