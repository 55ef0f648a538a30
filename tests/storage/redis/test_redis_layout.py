"""Where the Redis backend puts things: one hash slot per queue, compact
streams, few round trips, few bytes."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from tests.helpers.redis_server import start_server
from tests.storage.helpers import TaskMaker, complete, fail, put
from tqd.clock import FakeClock
from tqd.models import Task

from .waiting import eventually

GLOBAL = (":queues", ":events", ":{w}:exp", ":{w}:info")


async def _workload(s, make: TaskMaker, clock: FakeClock) -> list[Task]:
    """Tasks of two queues in every state, by every kind of operation."""
    tasks = await put(
        s, *make.many(6, queue="a"), make(queue="a", delay=60), make(queue="a", key="k")
    )
    await put(s, *make.many(3, queue="b", name="other", priority=5))
    now = clock.now()
    leased = await s.lease("a", 4, "w1", now)
    await s.settle([complete(leased[0]), fail(leased[1], retry_at=now + 5), fail(leased[2])], now)
    await s.cancel(tasks[5].id, now)
    await s.lease("b", 1, "w2", now)
    await s.set_paused("b", True)
    from tqd.models import WorkerInfo

    await s.register_worker(
        WorkerInfo(id="w1", host="h", pid=1, version="0", started_at=now, concurrency=1), 30, now
    )
    return tasks


async def test_every_key_of_a_queue_is_in_that_queues_hash_slot(opened, raw, redis_prefix):
    clock = FakeClock()
    s = await opened()
    await _workload(s, TaskMaker(clock), clock)
    keys = [k.decode() async for k in raw.scan_iter(match=f"{redis_prefix}:*")]
    assert len(keys) > 10
    for key in keys:
        if key.endswith(GLOBAL):
            continue
        queue = key.split("{q:", 1)[1].split("}", 1)[0]
        assert queue in ("a", "b"), key
        assert key_slot(key.encode()) == key_slot(s.keys.counts(queue).encode()), key


async def test_scripts_stay_in_one_slot_on_a_cluster_node(tmp_path):
    """On Redis Cluster a #!lua script that touches another slot is refused;
    one node serving every slot runs the whole workload without a refusal."""
    server = start_server(
        tmp_path, ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    )
    client = Redis.from_url(server.url)
    try:
        await client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

        async def cluster_ok() -> bool:
            return b"cluster_state:ok" in await client.execute_command("CLUSTER", "INFO")

        await eventually(cluster_ok)
        # the guard works: a stray key in a #!lua script is refused
        with pytest.raises(Exception, match="same slot"):
            await client.eval("#!lua\nreturn redis.call('GET', 'x{other}')", 1, "y{one}")
        from tqd.storage.redis import RedisStorage

        s = RedisStorage(server.url, prefix="c")
        await s.open()
        try:
            clock = FakeClock()
            tasks = await _workload(s, TaskMaker(clock), clock)
            await s.reclaim_expired(clock.advance(100))
            await s.promote_due(clock.now())
            await s.list(queue="a")
            await s.retry(tasks[5].id, clock.now())
            await s.purge("a", "pending")
            await s.redrive("a", clock.now())
            await s.expire_finished("completed", clock.now() + 1)
        finally:
            await s.close()
    finally:
        await client.aclose()
        server.stop()


async def test_streams_stay_small_listpacks_in_id_order(opened, raw, redis_prefix):
    """Many tasks arriving out of id order: buckets split, stay listpacks of
    at most 128 ids, and lease and list still follow the ids exactly."""
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened()
    tasks = [make() for _ in range(700)]
    shuffled = tasks[:]
    random.Random(7).shuffle(shuffled)
    for i in range(0, 700, 50):
        await put(s, *shuffled[i : i + 50])
    buckets = [k async for k in raw.scan_iter(match=f"{redis_prefix}:{{q:q}}:x:pending:0:job/*")]
    assert len(buckets) >= 6
    for k in buckets:
        assert await raw.object("encoding", k) == b"listpack"
        assert await raw.zcard(k) <= 128
    # cancel a random third, then the rest comes out in id order
    gone = {t.id for t in random.Random(8).sample(tasks, 233)}
    for tid in gone:
        await s.cancel(tid, clock.now())
    left = [t.id for t in tasks if t.id not in gone]
    listed, cursor = [], None
    while True:
        page = await s.list(state="pending", limit=37, cursor=cursor)
        listed += [t.id for t in page.tasks]
        if (cursor := page.next_cursor) is None:
            break
    assert listed == sorted(left, reverse=True)
    leased = []
    while batch := await s.lease("q", 100, "w", clock.now()):
        leased += [t.id for t in batch]
    assert leased == sorted(left)
    assert not [k async for k in raw.scan_iter(match=f"{redis_prefix}:{{q:q}}:x:pending*")]


async def test_extend_and_settle_many_leases_of_several_queues(opened):
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened()
    await put(s, *make.many(3, queue="a"), *make.many(3, queue="b"))
    now = clock.now()
    leased = await s.lease("a", 3, "w", now) + await s.lease("b", 3, "w", now)
    leases = [(t.id, t.lease_token) for t in leased]
    assert await s.extend(leases, clock.advance(10)) == [True] * 6
    assert await s.settle([complete(t) for t in leased], clock.now()) == [True] * 6
    assert await s.extend(leases, clock.now()) == [False] * 6


async def test_large_batches_out_of_order_keep_buckets_listpacks_and_order(opened, raw, redis_prefix):
    """Batches larger than a bucket, landing before, inside and after the
    existing ids: every bucket stays a listpack and the order holds."""
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened()
    tasks = [make() for _ in range(1200)]
    order = tasks[400:800] + tasks[:300] + tasks[900:] + tasks[300:400] + tasks[800:900]
    head = order[:300]
    random.Random(3).shuffle(head)
    order[:300] = head
    for i in range(0, 1200, 300):
        await put(s, *order[i : i + 300])
    pattern = f"{redis_prefix}:{{q:q}}:x:pending:0:job/*"
    for k in [k async for k in raw.scan_iter(match=pattern)]:
        assert await raw.object("encoding", k) == b"listpack"
        assert await raw.zcard(k) < 128
    leased = []
    while batch := await s.lease("q", 500, "w", clock.now()):
        leased += [t.id for t in batch]
    assert leased == [t.id for t in tasks]
