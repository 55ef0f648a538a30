"""The scheduler, table-driven: seed delayed tasks → run_once(now) → expect
states and the delay until the next round."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.storage.helpers import TaskMaker
from tqd.clock import FakeClock
from tqd.models import Change
from tqd.runtime.scheduler import Scheduler
from tqd.storage.base import BULK_CHUNK
from tqd.storage.sqlite import SqliteStorage


@dataclass
class Case:
    name: str
    #: label → delay in seconds after T0 (None: an ordinary pending task).
    seed: dict[str, float | None]
    #: Seconds after T0 at which the round runs.
    at: float
    #: label → state after the round.
    want: dict[str, str]
    #: What run_once returns: seconds until the next run_at, or None.
    want_delay: float | None


CASES = [
    Case("nothing scheduled: wait the regular interval", {}, 5, {}, None),
    Case("a due task becomes pending", {"a": 10}, 11, {"a": "pending"}, None),
    Case("a task due exactly now becomes pending", {"a": 10}, 10, {"a": "pending"}, None),
    Case("a task not yet due stays scheduled", {"a": 10}, 9, {"a": "scheduled"}, 1.0),
    Case(
        "due ones promoted, the delay is the time to the earliest left",
        {"early": 1, "due": 5, "later": 30, "soon": 12.5},
        6,
        {"early": "pending", "due": "pending", "later": "scheduled", "soon": "scheduled"},
        6.5,
    ),
    Case(
        "pending tasks are not the scheduler's business",
        {"p": None, "s": 100},
        50,
        {"p": "pending", "s": "scheduled"},
        50.0,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_scheduler_round(
    case: Case, store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    t0 = clock.now()
    tasks = {label: make(delay=delay) for label, delay in case.seed.items()}
    if tasks:
        await store.enqueue(list(tasks.values()))
    events: list = []
    store.add_listener(events.extend)

    delay = await Scheduler(store, clock).run_once(t0 + case.at)

    if case.want_delay is None:
        assert delay is None
    else:
        assert delay == pytest.approx(case.want_delay)
    for label, state in case.want.items():
        task = await store.get(tasks[label].id)
        assert task is not None and task.state == state, label
    promoted = {c.id for c in events if isinstance(c, Change) and c.state == "pending"}
    assert promoted == {
        tasks[label].id for label, state in case.want.items()
        if state == "pending" and case.seed[label] is not None
    }


async def test_more_due_tasks_than_one_chunk(
    store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    n = BULK_CHUNK + 5
    await store.enqueue(make.many(n, queue="big", delay=1))
    assert await Scheduler(store, clock).run_once(clock.now() + 2) is None
    info = await store.queue("big")
    assert info.counts["pending"] == n and info.counts["scheduled"] == 0


async def test_a_newly_scheduled_task_wakes_the_scheduler(
    store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    """The scheduler listens to changes so a short delay is not served at the
    next tick; a pending task does not wake it."""
    scheduler = Scheduler(store, clock)
    store.add_listener(scheduler.on_changes)
    await store.enqueue([make()])
    assert not scheduler._wake.is_set()
    await store.enqueue([make(delay=0.05)])
    assert scheduler._wake.is_set()
