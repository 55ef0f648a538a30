"""The Redis group indexes stay exact through every operation.

Runs the conformance suite's random walk (tests/storage/test_model.py) with
tasks spread over groups and limits on one queue, and after every step
compares the indexes kept for fair groups with the stored tasks: each
group's pending index (id -> -priority), the set of groups with pending
tasks, the processing count per group and the count of grouped pending
tasks.
"""

from __future__ import annotations

import random

import pytest

from tests.storage.helpers import TaskMaker, all_tasks, put
from tests.storage.test_model import QUEUES, Walk
from tqd.clock import FakeClock
from tqd.models import QueueLimits

GROUPS = (None, "g1", "g2", "tenant:3")


class GroupWalk(Walk):
    async def lease(self):
        # Groups take turns, so strict priority across the queue no longer
        # holds; the walk checks the states, the indexes are checked below.
        queue, now = self.rng.choice(QUEUES), self.clock.now()
        for t in await self.s.lease(queue, self.rng.randint(1, 3), "w", now):
            m = self.tasks[t.id]
            assert (m.state, m.queue) == ("pending", queue)
            m.state, m.token, m.expires = "processing", t.lease_token, t.lease_expires_at


async def check_group_indexes(s, raw) -> None:
    tasks = await all_tasks(s)
    for queue in QUEUES:
        pending: dict[str, dict[bytes, float]] = {}
        running: dict[str, int] = {}
        for t in tasks:
            if t.queue != queue or t.group is None:
                continue
            if t.state == "pending":
                pending.setdefault(t.group, {})[t.id.encode()] = float(-t.priority)
            elif t.state == "processing":
                running[t.group] = running.get(t.group, 0) + 1
        stored = {}
        async for key in raw.scan_iter(match=s.keys.group_index(queue, "*")):
            group = key.decode()[len(s.keys.group_index(queue, "")) :]
            stored[group] = dict(await raw.zrange(key, 0, -1, withscores=True))
        assert stored == pending
        assert {g.decode() for g in await raw.zrange(s.keys.groups(queue), 0, -1)} == set(pending)
        gp = {
            k.decode(): int(v)
            for k, v in (await raw.hgetall(s.keys.group_processing(queue))).items()
        }
        # gp is kept only while a group cap could bind (see the prelude):
        # then it is exact, else it is gone.
        if await raw.hexists(s.keys.counts(queue), "_gk"):
            assert gp == running
        else:
            assert gp == {}
        grouped = int(await raw.hget(s.keys.counts(queue), "_g") or 0)
        assert grouped == sum(len(ids) for ids in pending.values())


@pytest.mark.parametrize("seed", range(6))
async def test_a_random_walk_keeps_the_group_indexes_exact(opened, raw, seed):
    s = await opened()
    clock, rng = FakeClock(), random.Random(seed)
    maker = TaskMaker(clock)

    def make(**kwargs):
        return maker(group=rng.choice(GROUPS), **kwargs)

    await s.set_limits("a", QueueLimits(concurrency=4, group_concurrency=1), clock.now())
    walk = GroupWalk(s, make, clock, rng)
    async def cap():
        # A cap on the second queue comes and goes, so gp is built with
        # tasks processing and dropped again.
        limit = rng.choice([None, 1, 2, 100])
        await s.set_limits(QUEUES[1], QueueLimits(group_concurrency=limit), clock.now())

    steps = [walk.enqueue] * 3 + [walk.lease] * 3 + [walk.settle] * 3 + [walk.tick] * 2
    steps += [walk.by_hand, walk.bulk, cap]
    for i in range(150):
        await rng.choice(steps)()
        await walk.check_counts()
        await check_group_indexes(s, raw)
        if i % 10 == 9:
            await walk.check_tasks()
    await walk.check_tasks()
    states = {m.state for m in walk.tasks.values()}
    assert {"pending", "processing"} & states


async def test_an_ungrouped_task_stores_no_group_field(opened, raw):
    s = await opened()
    clock = FakeClock()
    make = TaskMaker(clock)
    [plain, grouped] = await put(s, make(), make(group="g"))
    assert await raw.hget(s.keys.task("q", plain.id), "gr") is None
    assert await raw.hget(s.keys.task("q", grouped.id), "gr") == b"g"


async def test_the_fast_path_leaves_no_group_keys(opened, raw):
    """Queues without groups get none of the group keys."""
    s = await opened()
    clock = FakeClock()
    make = TaskMaker(clock)
    await put(s, *make.many(5))
    await s.lease("q", 3, "w", clock.now())
    assert not await raw.exists(s.keys.groups("q"), s.keys.group_processing("q"))
    assert [k async for k in raw.scan_iter(match=s.keys.group_index("q", "*"))] == []
