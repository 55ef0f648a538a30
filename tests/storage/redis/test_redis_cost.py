"""What the hot path costs: round trips per batch and bytes per queued task."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import AbstractConnection

from tests.storage.helpers import TaskMaker, complete, put
from tqd.clock import FakeClock


@pytest.fixture
def round_trips(monkeypatch) -> list[int]:
    """Counts the requests every client sends (a pipeline is one)."""
    sent = [0]
    original = AbstractConnection.send_packed_command

    async def counting(self, command, check_health=True):
        sent[0] += 1
        return await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


async def _evalsha_calls(raw) -> int:
    return (await raw.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)


async def test_enqueue_lease_and_settle_are_one_round_trip_per_batch(opened, raw, round_trips):
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened()
    scripts = await _evalsha_calls(raw)
    before = round_trips[0]
    await put(s, *make.many(500))
    leased = await s.lease("q", 300, "w", clock.now())
    assert len(leased) == 300
    await s.extend([(t.id, t.lease_token) for t in leased], clock.now())
    await s.settle([complete(t) for t in leased], clock.now())
    sent = round_trips[0] - before
    assert (sent, await _evalsha_calls(raw) - scripts) == (4, 4)


async def test_a_batch_over_several_queues_is_still_one_round_trip(opened, round_trips):
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened()
    await put(s, make(queue="a"), make(queue="b"))
    before = round_trips[0]
    results = await s.enqueue([make(queue="a"), make(queue="b"), make(queue="c")])
    assert all(r.created for r in results)
    assert round_trips[0] - before == 1


async def test_a_queued_task_takes_at_most_250_bytes(opened, raw):
    """INFO used_memory before and after 20,000 tasks with an empty payload
    (python -m tests.storage.redis.measure_memory measures 100,000)."""
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened()
    await s.enqueue([make(queue="default", name="noop")])
    n = 20_000
    before = (await raw.info("memory"))["used_memory"]
    for _ in range(n // 1000):
        await s.enqueue([make(queue="default", name="noop") for _ in range(1000)])
    per_task = ((await raw.info("memory"))["used_memory"] - before) / n
    await s.purge("default", "pending")
    assert per_task <= 250, f"{per_task:.0f} bytes per queued task"


async def _calls(raw, command: str) -> int:
    return (await raw.info("commandstats")).get(f"cmdstat_{command}", {}).get("calls", 0)


async def test_a_grouped_lease_reads_each_group_once_and_asks_no_exists_per_group(opened, raw):
    # The lease reads one id ahead in each group it takes from, so it knows
    # which groups it emptied without asking Redis (see flush_groups): the
    # EXISTS calls left are a few of the lease's own (is the queue paused?),
    # not two per group.
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened()
    groups = [f"g{i:02d}" for i in range(20)]
    await put(s, *[make(group=g) for g in groups for _ in range(2)])
    before = {c: await _calls(raw, c) for c in ("zrange", "exists")}
    first = await s.lease("q", 20, "w", clock.now())  # one of each group; each keeps one
    assert sorted(t.group for t in first) == groups
    assert await _calls(raw, "zrange") - before["zrange"] == 20
    after_first = await _calls(raw, "exists")
    assert after_first - before["exists"] <= 3
    assert len(await raw.zrange(s.keys.groups("q"), 0, -1)) == 20
    second = await s.lease("q", 20, "w", clock.now())  # the last of each group
    assert sorted(t.group for t in second) == groups
    assert await _calls(raw, "exists") - after_first <= 3
    assert await raw.zrange(s.keys.groups("q"), 0, -1) == []
