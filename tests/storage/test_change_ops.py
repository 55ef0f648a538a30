"""``Change.op``: each change this process makes names the operation that made it.

Metrics count the work a process did from these (enqueued, completed,
retried, reclaimed...), so every operation must name itself, and a change
heard from another process must name none.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.storage.redis.waiting import Heard
from tqd.models import OPS, Change
from tqd.storage.base import SHARED

from .helpers import complete, fail, lease_one, put, release


@pytest.fixture
def heard(storage) -> list[Change]:
    """Every Change the storage emits, op included."""
    seen: list[Change] = []

    def on(batch: Any) -> None:
        seen.extend(c for c in batch if type(c) is Change)

    storage.add_listener(on)
    return seen


def ops(heard: list[Change]) -> list[tuple[str, str]]:
    """(state, op) of each change, and forget them."""
    out = [(c.state, c.op) for c in heard]
    heard.clear()
    return out


async def test_enqueue_lease_settle(storage, make, clock, heard):
    await put(storage, make(), make(delay=5))
    assert ops(heard) == [("pending", "enqueue"), ("scheduled", "enqueue")]
    await put(storage, make(), make())
    heard.clear()
    a, b, c = await storage.lease("q", 3, "w1", clock.now())
    assert ops(heard) == [("processing", "lease")] * 3
    await storage.settle([complete(a), fail(b, retry_at=clock.now() + 60), release(c)], clock.now())
    assert ops(heard) == [("completed", "settle"), ("scheduled", "settle"), ("pending", "settle")]
    d = await lease_one(storage, clock.now())
    heard.clear()
    await storage.settle([fail(d)], clock.now())
    assert ops(heard) == [("failed", "settle")]


async def test_reclaim_promote_expire(storage, make, clock, heard):
    await put(storage, make(visibility_timeout=1), make(delay=1))
    await lease_one(storage, clock.now())
    heard.clear()
    clock.advance(5)
    await storage.reclaim_expired(clock.now())
    assert ops(heard) == [("pending", "reclaim")]
    await storage.promote_due(clock.now())
    assert ops(heard) == [("pending", "promote")]
    t = await lease_one(storage, clock.now())
    await storage.settle([complete(t)], clock.now())
    heard.clear()
    clock.advance(10)
    await storage.expire_finished("completed", clock.now())
    assert ops(heard) == [("deleted", "expire")]


async def test_task_and_queue_operations(storage, make, clock, heard):
    a, _ = await put(storage, make(), make())
    heard.clear()
    await storage.cancel(a.id, clock.now())
    await storage.retry(a.id, clock.now())
    await storage.cancel(a.id, clock.now())
    await storage.delete(a.id)
    assert ops(heard) == [
        ("cancelled", "cancel"), ("pending", "retry"), ("cancelled", "cancel"), ("deleted", "delete")
    ]
    await storage.purge("q", "pending")
    assert ops(heard) == [("deleted", "purge")]
    await put(storage, make(max_attempts=1))
    t = await lease_one(storage, clock.now())
    await storage.settle([fail(t)], clock.now())
    heard.clear()
    await storage.redrive("q", clock.now())
    assert ops(heard) == [("pending", "redrive")]


async def test_every_op_is_a_known_name(storage, make, clock, heard):
    await put(storage, make())
    t = await lease_one(storage, clock.now())
    await storage.settle([complete(t)], clock.now())
    assert heard and all(c.op in OPS for c in heard)


async def test_changes_heard_from_another_process_name_no_op(storage, new_storage, make):
    if SHARED not in storage.capabilities:
        return  # a second process cannot open this store (test_life.py checks the refusal)
    other = new_storage()
    await other.open()
    try:
        theirs = Heard(other)
        task = (await put(storage, make()))[0]
        await theirs.until(lambda ch: any(c.id == task.id for c in ch))
        assert theirs.changes == [Change(task.id, task.queue, task.name, "pending", "")]
    finally:
        await other.close()
