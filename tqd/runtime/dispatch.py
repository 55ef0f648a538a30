"""How the worker pool shares free slots among queues that have work.

Two orders (``[worker] dispatch``), both pure arithmetic on queue names, so
the pool keeps only the leasing:

- ``"weighted"`` (default): :class:`WeightedShares` splits the free slots
  of each round in proportion to the queues' weights and carries what a
  round cannot hand out (the fractions) as credit to the next rounds,
  largest remainder first. The shares therefore hold over time, not just
  per round: with 4 slots and two backed-up queues of weights 3 and 1, one
  slot freeing at a time, the starts go 3:1. A queue that stops contending
  (idle, parked, held) loses its credit.
- ``"strict"``: :func:`strict_order` ranks queues in the order of
  ``[worker] queues`` (then by name); the pool offers every free slot to the
  first and asks the next only for what it left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def strict_order(queues: Iterable[str], configured: Sequence[str]) -> list[str]:
    """``queues`` in the order of ``configured``; queues not listed follow, by name."""
    rank = {q: i for i, q in enumerate(configured)}
    last = len(rank)
    return sorted(queues, key=lambda q: (rank.get(q, last), q))


class WeightedShares:
    """Weighted dispatch with credit carried between rounds (see the module docstring)."""

    def __init__(self) -> None:
        #: Slots a queue is owed (positive) or owes (negative) from past rounds.
        self._credit: dict[str, float] = {}

    def forget(self, queue: str) -> None:
        """``queue`` stopped contending (idle, parked, held): its credit goes."""
        self._credit.pop(queue, None)

    def reset(self) -> None:
        """New weights (a reload): every queue starts without credit."""
        self._credit.clear()

    def split(
        self, queues: Sequence[str], free: int, weights: Mapping[str, int], batch: int
    ) -> list[tuple[str, int]]:
        """``(queue, slots)`` for this round: ``free`` slots split among
        ``queues`` by ``weights`` (1 when absent) plus credit, each share at
        most ``batch``, never more than ``free`` in all; queues given 0 are
        left out."""
        credit = self._credit
        for q in [q for q in credit if q not in queues]:
            del credit[q]
        # Credits sum to zero among the contenders, so the shares never add
        # up to more than the free slots.
        drift = sum(credit.values()) / len(queues)
        total = sum(weights.get(q, 1) for q in queues)
        shares: dict[str, int] = {}
        given = 0
        for q in queues:
            exact = free * weights.get(q, 1) / total + credit.get(q, 0.0) - drift
            n = max(0, int(exact))
            shares[q] = n
            credit[q] = exact - n
            given += n
        # The slots left by rounding down go to the largest credits.
        for q in sorted(queues, key=credit.__getitem__, reverse=True)[: max(0, free - given)]:
            shares[q] += 1
            credit[q] -= 1.0
        plan = []
        for q, n in shares.items():
            n = min(n, batch, free)
            if n > 0:
                plan.append((q, n))
                free -= n
        return plan
