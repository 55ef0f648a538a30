"""The janitor, table-driven: seed tasks finished at known times → run_once(now)
→ expect which are gone, per state and its own retention."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.storage.helpers import TaskMaker, complete, fail
from tqd.clock import FakeClock
from tqd.config import RetentionConfig
from tqd.runtime.janitor import Janitor
from tqd.storage.base import BULK_CHUNK
from tqd.storage.sqlite import SqliteStorage

DAY = 86400.0


@dataclass
class Seed:
    label: str
    state: str
    #: Seconds before the round at which the task reached ``state``.
    age: float


@dataclass
class Case:
    name: str
    retention: RetentionConfig
    seed: list[Seed]
    gone: set[str]


WEEK = RetentionConfig()  # the default: 7 days for every state
PER_STATE = RetentionConfig(completed=60, failed=3600, cancelled=DAY)

CASES = [
    Case("nothing stored", WEEK, [], set()),
    Case(
        "default retention: a week for every finished state",
        WEEK,
        [
            Seed("c-old", "completed", 7 * DAY + 1),
            Seed("c-new", "completed", 7 * DAY - 1),
            Seed("f-old", "failed", 8 * DAY),
            Seed("f-new", "failed", DAY),
            Seed("x-old", "cancelled", 30 * DAY),
            Seed("x-new", "cancelled", 1),
        ],
        {"c-old", "f-old", "x-old"},
    ),
    Case(
        "each state has its own retention",
        PER_STATE,
        [
            Seed("c", "completed", 120),
            Seed("f", "failed", 120),
            Seed("x", "cancelled", 120),
            Seed("f2", "failed", 3601),
            Seed("x2", "cancelled", DAY + 1),
        ],
        {"c", "f2", "x2"},
    ),
    Case(
        "a task exactly at its retention is kept",
        PER_STATE,
        [Seed("c", "completed", 60)],
        set(),
    ),
    Case(
        "retention 0 removes every finished task at once",
        RetentionConfig(completed=0, failed=0, cancelled=0),
        [Seed("c", "completed", 0.5), Seed("f", "failed", 0.5), Seed("x", "cancelled", 0.5)],
        {"c", "f", "x"},
    ),
    Case(
        "unfinished tasks are never expired, however old",
        RetentionConfig(completed=0, failed=0, cancelled=0),
        [
            Seed("p", "pending", 30 * DAY),
            Seed("s", "scheduled", 30 * DAY),
            Seed("r", "processing", 30 * DAY),
        ],
        set(),
    ),
]


async def _finish(store: SqliteStorage, make: TaskMaker, seed: Seed, at: float) -> str:
    """A task of ``seed.label``'s own queue that reached ``seed.state`` at ``at``."""
    queue = f"q-{seed.label}"
    task = make(queue=queue, delay=10 * 365 * DAY if seed.state == "scheduled" else None)
    await store.enqueue([task])
    if seed.state in ("pending", "scheduled"):
        return task.id
    if seed.state == "cancelled":
        await store.cancel(task.id, at)
        return task.id
    (leased,) = await store.lease(queue, 1, "w1", at)
    if seed.state == "completed":
        assert await store.settle([complete(leased)], at) == [True]
    elif seed.state == "failed":
        assert await store.settle([fail(leased, retry_at=None, at=at)], at) == [True]
    return task.id


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_janitor_round(
    case: Case, store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    now = clock.now() + 60 * DAY
    ids = {}
    for seed in case.seed:
        ids[seed.label] = await _finish(store, make, seed, now - seed.age)
        stored = await store.get(ids[seed.label])
        assert stored is not None and stored.state == seed.state

    assert await Janitor(store, clock, case.retention).run_once(now) is None

    for seed in case.seed:
        present = await store.get(ids[seed.label]) is not None
        assert present == (seed.label not in case.gone), seed.label
    for seed in case.seed:  # the counts follow the deletions
        info = await store.queue(f"q-{seed.label}")
        assert info.counts[seed.state] == (0 if seed.label in case.gone else 1)


async def test_more_expired_tasks_than_one_chunk(
    store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    n = BULK_CHUNK + 7
    await store.enqueue(make.many(n, queue="big"))
    leased = await store.lease("big", n, "w1", clock.now())
    await store.settle([complete(t) for t in leased], clock.now())
    retention = RetentionConfig(completed=10)
    await Janitor(store, clock, retention).run_once(clock.now() + 11)
    info = await store.queue("big")
    assert info.counts["completed"] == 0
    assert (await store.list(queue="big")).tasks == []
