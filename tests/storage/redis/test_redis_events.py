"""Change events between processes sharing one Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from tests.storage.helpers import TaskMaker, put
from tqd.clock import FakeClock
from tqd.models import Change, QueueChange

from .waiting import Heard


async def test_changes_of_another_process_are_delivered(opened):
    clock = FakeClock()
    make = TaskMaker(clock)
    a, b = await opened(), await opened()
    heard = Heard(a)
    tasks = await put(b, *make.many(3))
    await heard.until(lambda ch: len(ch) >= 3)
    assert heard.changes == [Change(t.id, "q", "job", "pending") for t in tasks]
    await b.set_paused("q", True)
    await heard.until(lambda ch: QueueChange("q", "paused") in ch)


async def test_a_process_hears_its_own_changes_once(opened):
    clock = FakeClock()
    make = TaskMaker(clock)
    a, b = await opened(), await opened()
    mine, theirs = Heard(a), Heard(b)
    task = (await put(a, make()))[0]
    # by the time b heard it by pub/sub, a's own copy has arrived too
    await theirs.until(lambda ch: len(ch) == 1)
    await put(b, make(name="marker"))
    await mine.until(lambda ch: any(c.name == "marker" for c in ch))
    assert [c.id for c in mine.changes if c.name == "job"] == [task.id]


async def test_other_prefixes_are_other_stores(opened, redis_prefix):
    clock = FakeClock()
    make = TaskMaker(clock)
    a, other = await opened(), await opened(prefix=redis_prefix + "-other")
    heard = Heard(a)
    await put(other, make(name="elsewhere"))
    await put(a, make(name="here"))
    await put(await opened(), make(name="marker"))
    await heard.until(lambda ch: any(c.name == "marker" for c in ch))
    assert {c.name for c in heard.changes} == {"here", "marker"}
    assert [q.name for q in await a.queues()] == ["q"]


async def test_a_lost_subscription_resyncs_with_a_pending_change_per_queue(opened, redis_server):
    clock = FakeClock()
    make = TaskMaker(clock)
    a = await opened()
    await put(a, make(queue="busy"))
    await a.declare_queues(["idle"])
    heard = Heard(a)
    killer = Redis.from_url(redis_server.url)
    try:
        # drop every subscriber connection on the server (the other tests'
        # handles are closed by now; they would simply resync too)
        await killer.client_kill_filter(_type="pubsub")
    finally:
        await killer.aclose()
    await heard.until(lambda ch: Change("", "busy", "", "pending") in ch)
    assert a._sub.resyncs == 1 and a._sub.connected
    assert not [c for c in heard.changes if c.queue == "idle"]
    # and the subscription works again
    other = await opened()
    await put(other, make(name="after"))
    await heard.until(lambda ch: any(c.name == "after" for c in ch))


async def test_idle_handles_wake_within_milliseconds(opened):
    """The wake-up path: an enqueue anywhere reaches another process's listener fast."""
    clock = FakeClock()
    make = TaskMaker(clock)
    a, b = await opened(), await opened()
    woke = asyncio.Event()
    a.add_listener(lambda ch: woke.set() if any(c.state == "pending" for c in ch) else None)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await put(b, make())
    await asyncio.wait_for(woke.wait(), 2.0)
    assert loop.time() - start < 0.5
