"""Latency histograms with fixed, log-spaced buckets.

A histogram is a sparse mapping ``bucket index -> count``. Every process
uses the same buckets, so histograms of many processes (and many seconds)
merge by adding counts, and percentiles are computed on read. Bucket 0 holds
every value up to ``BASE_MS``; bucket ``i >= 1`` holds the values in
``(BASE_MS * 2**((i-1)/STEPS), BASE_MS * 2**(i/STEPS)]``. With four steps
per doubling a bucket is 19% wide, so a percentile read back from it is
within about ±9% of the true value (the geometric middle of its bucket).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping

#: Upper bound of bucket 0, in milliseconds.
BASE_MS = 0.01
#: Buckets per doubling of the value.
STEPS = 4
#: The last bucket; it also holds everything beyond (about 11 days).
MAX_BUCKET = 4 * 37

def upper_bound(i: int) -> float:
    """The largest value (ms) bucket ``i`` holds."""
    return BASE_MS * 2.0 ** (i / STEPS)


_UPPER = [upper_bound(i) for i in range(MAX_BUCKET)]


def bucket_of(ms: float) -> int:
    """The bucket that holds ``ms`` milliseconds (a binary search of the bounds)."""
    return bisect_left(_UPPER, ms)


def representative(i: int) -> float:
    """The value (ms) reported for bucket ``i``: its geometric middle."""
    if i <= 0:
        return BASE_MS / 2
    return BASE_MS * 2.0 ** ((i - 0.5) / STEPS)


def merge_into(total: dict[int, int], more: Mapping[int, int]) -> dict[int, int]:
    """Add the counts of ``more`` to ``total`` (in place) and return it."""
    for i, n in more.items():
        total[i] = total.get(i, 0) + n
    return total


def percentiles(hist: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    """The ``qs`` quantiles (0 < q <= 1) of ``hist`` in ms, None when it is empty."""
    qs = list(qs)
    total = sum(hist.values())
    if total <= 0:
        return [None] * len(qs)
    ordered = sorted((i, n) for i, n in hist.items() if n > 0)
    out: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        seen = 0
        for i, n in ordered:
            seen += n
            if seen >= rank:
                out.append(round(representative(i), 3))
                break
    return out
