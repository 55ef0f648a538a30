"""A store outlives its handles: open, close, reopen, a second handle.

Whether two handles may use one store at once is the ``SHARED`` capability:
a shared backend must show each handle the other's writes and changes; any
other backend must refuse the second ``open()`` with ConfigError, since
leases (``reclaim_worker`` after a restart) assume a single user.
"""

from __future__ import annotations

import asyncio

import pytest

from tqd.errors import ConfigError, StorageUnavailable
from tqd.models import Change
from tqd.storage.base import SHARED

from .helpers import counts, fail, lease_one, put


async def test_ping_answers_when_open(storage):
    assert await storage.ping() is None


async def test_a_closed_handle_is_unavailable(new_storage, make):
    s = new_storage()
    await s.open()
    await s.close()
    with pytest.raises(StorageUnavailable):
        await s.get("0" * 20)
    with pytest.raises(StorageUnavailable):
        await s.enqueue([make()])
    await s.close()  # closing twice is harmless


async def test_everything_survives_a_reopen(new_storage, make, clock):
    first = new_storage()
    await first.open()
    try:
        kept = make.many(3, max_attempts=1)
        delayed = make(delay=60)
        await put(first, *kept, delayed)
        leased = await lease_one(first, clock.now())
        await first.settle([fail(leased)], clock.now())
        await first.set_paused("q", True)
        await first.declare_queues(["idle"])
        before = [await first.get(t.id) for t in (*kept, delayed)]
        queues_before = await first.queues()
    finally:
        await first.close()

    second = new_storage()
    await second.open()
    try:
        assert [await second.get(t.id) for t in (*kept, delayed)] == before
        assert await second.queues() == queues_before
        assert await second.paused_queues() == {"q"}
        assert await counts(second) == {"pending": 2, "scheduled": 1, "failed": 1}
        assert await second.next_run_at() == clock.now() + 60
        await second.set_paused("q", False)
        assert len(await second.lease("q", 5, "w1", clock.now())) == 2
    finally:
        await second.close()


async def test_a_second_handle_shares_the_store_or_is_refused(storage, new_storage, make):
    other = new_storage()
    if SHARED not in storage.capabilities:
        with pytest.raises(ConfigError):
            await other.open()
        return
    await other.open()
    try:
        heard = asyncio.Event()
        got: list = []

        def listener(changes):
            got.extend(changes)
            heard.set()

        other.add_listener(listener)
        task = make()
        await put(storage, task)
        assert await other.get(task.id) == task
        await asyncio.wait_for(heard.wait(), timeout=5)
        assert Change(task.id, task.queue, task.name, "pending") in got
    finally:
        await other.close()
