"""The dispatch arithmetic of the worker pool, without a pool."""

from __future__ import annotations

from collections import Counter

from tqd.runtime.dispatch import WeightedShares, strict_order


def test_one_slot_at_a_time_still_follows_the_weights() -> None:
    shares = WeightedShares()
    starts: Counter[str] = Counter()
    for _ in range(400):
        for q, n in shares.split(["a", "b"], 1, {"a": 3}, batch=100):
            starts[q] += n
    assert starts == {"a": 300, "b": 100}


def test_a_round_never_hands_out_more_than_the_free_slots_or_the_batch() -> None:
    shares = WeightedShares()
    weights = {"a": 5, "b": 2, "c": 1}
    for free in (1, 2, 3, 7, 50, 1000):
        plan = shares.split(["a", "b", "c"], free, weights, batch=100)
        assert sum(n for _, n in plan) <= free
        assert all(0 < n <= 100 for _, n in plan)
    assert shares.split(["a", "b", "c"], 8, weights, batch=100) == [("a", 5), ("b", 2), ("c", 1)]


def test_strict_order_follows_the_configured_queues_then_names() -> None:
    assert strict_order({"z", "b", "a", "y"}, ["b", "a"]) == ["b", "a", "y", "z"]
