"""Fair groups: the lease goes round the groups of a queue in turns."""

from __future__ import annotations

from tqd.models import QueueLimits

from .helpers import all_tasks, assert_counts_exact, complete, put, release, two_handles


def groups_of(tasks):
    return [t.group for t in tasks]


async def test_a_task_keeps_its_group(storage, make, clock):
    [t] = await put(storage, make(group="tenant-1"))
    assert (await storage.get(t.id)).group == "tenant-1"
    assert [x.group for x in await all_tasks(storage)] == ["tenant-1"]
    leased = await storage.lease("q", 1, "w", clock.now())
    assert leased[0].group == "tenant-1"


async def test_one_turn_takes_one_task_of_each_group_in_name_order(storage, make, clock):
    await put(storage, *make.many(5, group="b"))
    await put(storage, make(group="a"), make(), make(group="c"))
    leased = await storage.lease("q", 4, "w", clock.now())
    # The tasks without a group count as the group "" (first by name).
    assert groups_of(leased) == [None, "a", "b", "c"]
    leased = await storage.lease("q", 3, "w", clock.now())
    assert groups_of(leased) == ["b", "b", "b"]


async def test_the_rotation_goes_on_from_the_last_lease(new_storage, make, clock):
    async with two_handles(new_storage) as (a, b):
        for g in ("x", "y", "z"):
            await put(a, *make.many(3, group=g))
        seen = []
        for i in range(7):
            handle = a if i % 2 else b
            seen += groups_of(await handle.lease("q", 1, "w", clock.now()))
        assert seen == ["x", "y", "z", "x", "y", "z", "x"]


async def test_within_a_group_priority_then_fifo(storage, make, clock):
    low1, low2 = make(group="g", priority=0), make(group="g", priority=0)
    high = make(group="g", priority=5)
    await put(storage, low1, low2, high)
    ids = []
    for _ in range(3):
        ids += [t.id for t in await storage.lease("q", 1, "w", clock.now())]
    assert ids == [high.id, low1.id, low2.id]


async def test_a_burst_does_not_delay_another_groups_single_task(storage, make, clock):
    await put(storage, *make.many(1000, group="big"))
    [small] = await put(storage, make(group="small"))
    first = await storage.lease("q", 1, "w", clock.now())
    second = await storage.lease("q", 1, "w", clock.now())
    assert small.id in {first[0].id, second[0].id}


async def test_group_concurrency_caps_each_group(storage, make, clock):
    await put(storage, *make.many(4, group="a"), *make.many(2, group="b"), make())
    await storage.set_limits("q", QueueLimits(group_concurrency=1), clock.now())
    leased = await storage.lease("q", 10, "w", clock.now())
    assert sorted(groups_of(leased), key=str) == sorted([None, "a", "b"], key=str)
    assert leased.limited == "group"
    # Tasks without a group are not capped by group_concurrency.
    again = await storage.lease("q", 10, "w", clock.now())
    assert list(again) == [] and again.limited == "group"
    a_task = next(t for t in leased if t.group == "a")
    await storage.settle([complete(a_task)], clock.now())
    assert groups_of(await storage.lease("q", 10, "w", clock.now())) == ["a"]


async def test_a_cap_set_while_tasks_run_counts_them(storage, make, clock):
    # The tasks leased before there was a cap count against it once there
    # is one (Redis keeps each group's processing count only under a cap
    # that could bind, and builds it from the processing tasks then), and
    # the count follows settles, a cap that cannot bind, and no cap.
    await put(storage, *make.many(6, group="a"), *make.many(6, group="b"))
    first = await storage.lease("q", 4, "w", clock.now())  # a, b, a, b
    await storage.set_limits("q", QueueLimits(group_concurrency=3), clock.now())
    assert groups_of(await storage.lease("q", 10, "w", clock.now())) == ["a", "b"]
    await storage.settle([complete(t) for t in first if t.group == "a"], clock.now())
    await storage.set_limits("q", QueueLimits(group_concurrency=1000), clock.now())
    await storage.set_limits("q", QueueLimits(group_concurrency=3), clock.now())
    assert groups_of(await storage.lease("q", 10, "w", clock.now())) == ["a", "a"]
    await storage.set_limits("q", QueueLimits(), clock.now())
    assert len(await storage.lease("q", 1, "w", clock.now())) == 1
    await storage.set_limits("q", QueueLimits(group_concurrency=3), clock.now())
    again = await storage.lease("q", 10, "w", clock.now())
    assert list(again) == [] and again.limited == "group"
    await assert_counts_exact(storage)


async def test_ungrouped_tasks_are_not_capped_by_group_concurrency(storage, make, clock):
    await put(storage, *make.many(3))
    await storage.set_limits("q", QueueLimits(group_concurrency=1), clock.now())
    assert len(await storage.lease("q", 10, "w", clock.now())) == 3


async def test_group_concurrency_two_takes_two_per_group(storage, make, clock):
    await put(storage, *make.many(5, group="a"), *make.many(5, group="b"))
    await storage.set_limits("q", QueueLimits(group_concurrency=2), clock.now())
    leased = await storage.lease("q", 10, "w", clock.now())
    assert groups_of(leased) == ["a", "b", "a", "b"]


async def test_a_released_task_returns_to_its_group(storage, make, clock):
    await put(storage, make(group="a"), make(group="b"))
    [t] = await storage.lease("q", 1, "w", clock.now())
    assert t.group == "a"
    await storage.settle([release(t)], clock.now())
    leased = await storage.lease("q", 2, "w", clock.now())
    assert groups_of(leased) == ["b", "a"]
    assert leased[1].id == t.id


async def test_reclaimed_and_retried_tasks_keep_their_group(storage, make, clock):
    await put(storage, make(group="a", visibility_timeout=5.0), make(group="b", visibility_timeout=5.0))
    leased = await storage.lease("q", 2, "w", clock.now())
    clock.advance(6)
    await storage.reclaim_expired(clock.now())
    again = await storage.lease("q", 2, "w", clock.now())
    assert sorted(groups_of(again)) == ["a", "b"]
    await storage.cancel(again[0].id, clock.now())
    await storage.retry(again[0].id, clock.now())
    [back] = await storage.lease("q", 2, "w", clock.now())
    assert back.id == again[0].id and back.group == again[0].group
    assert {t.id for t in leased} == {t.id for t in again}


async def test_removed_tasks_leave_their_group(storage, make, clock):
    doomed = await put(storage, *make.many(3, group="a"))
    [keep] = await put(storage, make(group="b"))
    await storage.delete(doomed[0].id)
    await storage.cancel(doomed[1].id, clock.now())
    await storage.purge("q", "cancelled")
    leased = await storage.lease("q", 10, "w", clock.now())
    assert {t.id for t in leased} == {doomed[2].id, keep.id}
    await assert_counts_exact(storage)


async def test_a_delayed_grouped_task_joins_the_rotation_when_due(storage, make, clock):
    await put(storage, *make.many(3, group="a"), make(group="b", delay=10))
    assert groups_of(await storage.lease("q", 1, "w", clock.now())) == ["a"]
    clock.advance(11)
    await storage.promote_due(clock.now())
    assert groups_of(await storage.lease("q", 2, "w", clock.now())) == ["b", "a"]


async def test_groups_and_a_queue_limit_together(storage, make, clock):
    await put(storage, *make.many(5, group="a"), *make.many(5, group="b"))
    await storage.set_limits("q", QueueLimits(concurrency=3, group_concurrency=2), clock.now())
    leased = await storage.lease("q", 10, "w", clock.now())
    assert groups_of(leased) == ["a", "b", "a"]
    assert leased.limited == "concurrency"
