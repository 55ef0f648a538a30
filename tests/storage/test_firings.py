"""claim_firing: one atomic compare-and-set per cron instant, so each
instant enqueues exactly one task across every process and restart."""

from __future__ import annotations

import asyncio

import pytest

from tqd.models import Firing
from tqd.storage.base import SHARED


async def test_an_instant_is_claimed_once(storage, clock):
    t = 1_800_000_060.0
    assert await storage.claim_firing("nightly", t, clock.now()) is True
    assert await storage.claim_firing("nightly", t, clock.now()) is False
    assert await storage.claim_firing("nightly", t - 60, clock.now()) is False
    assert await storage.claim_firing("nightly", t + 60, clock.now() + 1) is True
    assert await storage.firings() == {"nightly": Firing(t + 60, clock.now() + 1)}


async def test_schedules_are_independent(storage, clock):
    assert await storage.claim_firing("a", 100.0, 101.5)
    assert await storage.claim_firing("b", 100.0, 102.25)
    assert await storage.firings() == {"a": Firing(100.0, 101.5), "b": Firing(100.0, 102.25)}


async def test_no_firings_yet(storage):
    assert await storage.firings() == {}


async def test_concurrent_claims_of_one_instant_have_one_winner(storage, new_storage, clock):
    handles = [storage]
    if SHARED in storage.capabilities:
        other = new_storage()
        await other.open()
        handles.append(other)
    try:
        results = await asyncio.gather(
            *(handles[i % len(handles)].claim_firing("s", 5000.0, clock.now()) for i in range(40))
        )
        assert results.count(True) == 1
    finally:
        for h in handles[1:]:
            await h.close()


async def test_firings_survive_a_reopen(new_storage, clock):
    first = new_storage()
    await first.open()
    try:
        await first.claim_firing("s", 42.0, 43.0)
    finally:
        await first.close()
    second = new_storage()
    await second.open()
    try:
        assert await second.firings() == {"s": Firing(42.0, 43.0)}
        assert await second.claim_firing("s", 42.0, 44.0) is False
    finally:
        await second.close()


async def test_a_schedule_name_is_checked(storage, clock):
    with pytest.raises(ValueError):
        await storage.claim_firing("bad name", 1.0, clock.now())
