"""Change events: each operation reports what it changed, after it commits."""

from __future__ import annotations

import asyncio

import pytest

from tqd.errors import Conflict
from tqd.models import DELETED, Change, QueueChange

from .helpers import complete, fail, lease_one, put, release


def ch(task, state):
    return Change(task.id, task.queue, task.name, state)


async def test_enqueue_reports_each_new_task(storage, make, events):
    now, later = make("a", "q1"), make("b", "q2", delay=5)
    await put(storage, now, later)
    assert events == [ch(now, "pending"), ch(later, "scheduled")]
    assert all(type(e) is Change for e in events)


async def test_a_repeated_key_reports_nothing(storage, make, events):
    await put(storage, make(key="k"))
    events.clear()
    await storage.enqueue([make(key="k")])
    assert events == []


async def test_a_refused_enqueue_reports_nothing(storage, make, events):
    [first] = await put(storage, make())
    events.clear()
    with pytest.raises(Conflict):
        await storage.enqueue([make(), make(id=first.id)])
    assert events == []


async def test_lease_extend_and_settle(storage, make, clock, events):
    a, b, c, d = await put(storage, *make.many(4))
    leased = await storage.lease("q", 4, "w1", clock.now())
    assert sorted(events[4:]) == sorted(ch(t, "processing") for t in (a, b, c, d))
    la, lb, lc, ld = leased
    events.clear()
    await storage.extend([(la.id, la.lease_token)], clock.now())
    assert events == []  # no state changed
    stale = complete(ld)
    stale.token = "stale"
    await storage.settle(
        [complete(la), fail(lb, retry_at=clock.now() + 1), fail(lc), release(ld), stale],
        clock.now(),
    )
    assert events == [ch(la, "completed"), ch(lb, "scheduled"), ch(lc, "failed"), ch(ld, "pending")]


async def test_promote_reports_pending(storage, make, clock, events):
    [t] = await put(storage, make(delay=1))
    events.clear()
    await storage.promote_due(clock.advance(1))
    assert events == [ch(t, "pending")]


async def test_reclaims_report_the_new_state(storage, make, clock, events):
    last, more = (
        make(max_attempts=1, visibility_timeout=5),
        make(max_attempts=2, visibility_timeout=5),
    )
    await put(storage, last, more)
    await storage.lease("q", 2, "w1", clock.now())
    events.clear()
    await storage.reclaim_expired(clock.advance(6))
    assert sorted(events) == sorted([ch(last, "failed"), ch(more, "pending")])
    await lease_one(storage, clock.now(), worker="w2")
    events.clear()
    await storage.reclaim_worker("w2", clock.now())
    assert events == [ch(more, "failed")]


async def test_task_operations_report_their_change(storage, make, clock, events):
    [t] = await put(storage, make())
    events.clear()
    await storage.cancel(t.id, clock.now())
    assert events == [ch(t, "cancelled")]
    events.clear()
    with pytest.raises(Conflict):
        await storage.cancel(t.id, clock.now())
    assert events == []
    await storage.retry(t.id, clock.now())
    assert events == [ch(t, "pending")]
    events.clear()
    await storage.delete(t.id)
    assert events == [ch(t, DELETED)]


async def test_expire_reports_deletions(storage, make, clock, events):
    [t] = await put(storage, make())
    await storage.settle([complete(await lease_one(storage, clock.now()))], clock.now())
    events.clear()
    await storage.expire_finished("completed", clock.advance(1))
    assert events == [ch(t, DELETED)]


async def test_queue_controls_report_queue_changes(storage, make, clock, events):
    tasks = await put(storage, *make.many(2, max_attempts=1))
    await storage.set_paused("q", True)
    await storage.set_paused("q", False)
    assert events[2:] == [QueueChange("q", "paused"), QueueChange("q", "resumed")]
    assert type(events[-1]) is QueueChange
    events.clear()
    leased = await storage.lease("q", 2, "w1", clock.now())
    await storage.settle([fail(t) for t in leased], clock.now())
    events.clear()
    await storage.redrive("q", clock.now())
    assert sorted(events) == sorted(ch(t, "pending") for t in tasks)
    events.clear()
    await storage.purge("q", "pending")
    assert sorted(e for e in events if type(e) is Change) == sorted(ch(t, DELETED) for t in tasks)
    assert [e for e in events if type(e) is QueueChange] == [QueueChange("q", "purged")]


async def test_a_listener_sees_the_committed_state(storage, make, clock):
    """A read started from inside the listener already shows the new state."""
    reads: list[tuple[Change, asyncio.Future]] = []

    def listener(changes):
        for c in changes:
            if type(c) is Change:
                reads.append((c, asyncio.ensure_future(storage.get(c.id))))

    async def seen():
        out = [(c.state, (await read).state if await read else None) for c, read in reads]
        reads.clear()
        return out

    storage.add_listener(listener)
    [t] = await put(storage, make(max_attempts=1))
    assert await seen() == [("pending", "pending")]
    leased = await lease_one(storage, clock.now())
    assert await seen() == [("processing", "processing")]
    await storage.settle([fail(leased)], clock.now())
    assert await seen() == [("failed", "failed")]
    await storage.retry(t.id, clock.now())
    assert await seen() == [("pending", "pending")]
    await storage.delete(t.id)
    assert await seen() == [(DELETED, None)]


async def test_a_failing_listener_does_not_break_the_operation(storage, make, events):
    def broken(changes):
        raise RuntimeError("listener bug")

    storage.add_listener(broken)
    task = make()
    await put(storage, task)
    assert await storage.get(task.id) is not None
    assert events == [ch(task, "pending")]


async def test_a_removed_listener_hears_nothing(storage, make):
    heard = []
    storage.add_listener(heard.extend)
    storage.remove_listener(heard.extend)
    storage.remove_listener(heard.extend)  # twice is harmless
    await put(storage, make())
    assert heard == []
