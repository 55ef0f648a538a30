"""The cron role, table-driven: seed the store's last firing → run rounds at
fake times → expect the instants that were enqueued, each exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest

from tests.storage.helpers import all_tasks
from tqd.clock import FakeClock
from tqd.config import load_config
from tqd.errors import ConfigError, NotFound, StorageUnavailable
from tqd.runtime.catalog import Catalog
from tqd.runtime.cron import Cron, build_schedules
from tqd.storage.sqlite import SqliteStorage

T0 = 1_800_000_000.0  # FakeClock's start: a whole hour (and minute)


def make_cron(store, clock, schedules: dict, tasks: dict | None = None, grace: float = 10.0):
    config = load_config(None, env={}, check_paths=False, overrides={
        "schedules": schedules,
        "tasks": tasks or {"report": {"handler": "builtin:noop", "queue": "reports"}},
    })
    catalog = Catalog(config)
    return Cron(store, catalog, build_schedules(config, catalog), clock, grace=grace), config


async def fired_instants(store, name: str = "s") -> list[float]:
    """The instants (relative to T0) of the tasks schedule ``name`` enqueued."""
    out = []
    for t in await all_tasks(store):
        key = t.idempotency_key or ""
        if key.startswith(f"cron:{name}:"):
            out.append(float(key.rsplit(":", 1)[1]) - T0)
    return sorted(out)


@dataclass
class Case:
    name: str
    cron: str
    #: Times (seconds after T0) of the rounds; the first one is the start.
    rounds: list[float]
    #: Instants (seconds after T0) expected enqueued, in order.
    want: list[float]
    #: The last instant the store recorded before the start (None: never fired).
    stored: float | None = None
    catch_up: bool = False
    grace: float = 10.0
    extra: dict = field(default_factory=dict)


CASES = [
    Case("never fired: nothing before the start is owed", "* * * * *", [30, 60, 120.5], [60, 120]),
    Case("an instant is fired late within the grace", "* * * * *", [0, 65], [60]),
    Case("a stall past the grace skips what it missed", "* * * * *", [0, 200, 240], [240]),
    Case("a stall past the grace makes up the latest with catch_up", "* * * * *",
         [0, 200, 240], [180, 240], catch_up=True),
    Case("down while no daemon ran: skipped without catch_up", "* * * * *", [200, 240], [240],
         stored=60),
    Case("down while no daemon ran: the latest made up once with catch_up", "* * * * *",
         [200, 201, 240], [180, 240], stored=60, catch_up=True),
    Case("catch_up owes nothing when the last firing is the latest instant", "@hourly",
         [200, 3600], [3600], stored=0, catch_up=True),
    Case("a restart within the grace fires what it missed", "* * * * *", [125, 180], [120, 180],
         stored=60),
    Case("an instant the store already recorded is not fired again", "* * * * *", [60, 61, 120],
         [120], stored=60),
    Case("per-second schedule: one task per second", "* * * * * *", [0, 1, 2, 3.5, 4],
         [1, 2, 3, 4]),
    Case("a zero grace counts any late instant as missed", "* * * * *", [0, 60.5, 121],
         [], grace=0.0),
    Case("a zero grace with catch_up makes each up once", "* * * * *", [0, 60.5, 121],
         [60, 120], grace=0.0, catch_up=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_cron_rounds(case: Case, store: SqliteStorage, clock: FakeClock) -> None:
    if case.stored is not None:
        assert await store.claim_firing("s", T0 + case.stored, T0 + case.stored)
    cron, _ = make_cron(store, clock, {"s": {
        "cron": case.cron, "task": "report", "catch_up": case.catch_up,
    }}, grace=case.grace)
    for at in case.rounds:
        await cron.run_once(T0 + at)
    assert await fired_instants(store) == case.want
    fired = await store.firings()
    if case.want:
        assert fired["s"].instant == T0 + case.want[-1]


async def test_the_delay_is_the_time_to_the_next_instant(store, clock):
    cron, _ = make_cron(store, clock, {
        "minutely": {"cron": "* * * * *", "task": "report"},
        "hourly": {"cron": "@hourly", "task": "report"},
    })
    assert await cron.run_once(T0 + 12.5) == pytest.approx(47.5)
    empty, _ = make_cron(store, clock, {})
    assert await empty.run_once(T0) is None  # the regular interval


async def test_the_task_is_built_from_the_schedule(store, clock):
    cron, _ = make_cron(store, clock, {"s": {
        "cron": "* * * * *", "task": "report", "payload": {"kind": "daily", "n": [1, 2]},
        "priority": 7, "queue": "special",
    }})
    await cron.run_once(T0)
    await cron.run_once(T0 + 60)
    [task] = await all_tasks(store)
    assert task.name == "report"
    assert orjson.loads(task.payload) == {"kind": "daily", "n": [1, 2]}
    assert (task.queue, task.priority, task.state) == ("special", 7, "pending")
    assert task.idempotency_key == f"cron:s:{T0 + 60:.0f}"
    # unset queue and priority come from the task definition
    cron2, _ = make_cron(store, clock, {"t": {"cron": "* * * * *", "task": "report"}})
    await cron2.run_once(T0)
    await cron2.run_once(T0 + 60)
    [t2] = [t for t in await all_tasks(store) if t.idempotency_key.startswith("cron:t:")]
    assert (t2.queue, t2.priority) == ("reports", 0)


async def test_two_processes_fire_each_instant_once(store, other, clock):
    """Two roles on two handles of one store, running rounds in turn and in
    any order: each instant enqueues exactly one task."""
    spec = {"s": {"cron": "* * * * * *", "task": "report"}}
    a, _ = make_cron(store, clock, spec)
    b, _ = make_cron(other, clock, spec)
    await a.run_once(T0)
    await b.run_once(T0 + 0.5)
    for second in range(1, 31):
        first, then = (a, b) if second % 3 else (b, a)
        await first.run_once(T0 + second + 0.01)
        await then.run_once(T0 + second + 0.02)
    assert await fired_instants(store) == [float(s) for s in range(1, 31)]
    assert a.fired + b.fired == 30


async def test_a_lost_claim_is_guarded_by_the_idempotency_key(store, clock):
    """Should the store forget a firing (a Redis restart), the instant's task
    is still not enqueued twice."""
    spec = {"s": {"cron": "* * * * *", "task": "report"}}
    cron, _ = make_cron(store, clock, spec)
    await cron.run_once(T0)
    await cron.run_once(T0 + 60)
    fresh, _ = make_cron(store, clock, spec)
    fresh._start({}, T0 + 59)  # as if it started with no record of any firing
    await fresh.run_once(T0 + 60.5)
    assert await fired_instants(store) == [60]


async def test_a_failed_enqueue_is_sent_again(store, clock):
    class Flaky:
        """The store, but its first enqueue fails."""

        def __init__(self, inner):
            self.inner = inner
            self.fail = True

        def __getattr__(self, name):
            return getattr(self.inner, name)

        async def enqueue(self, tasks):
            if self.fail:
                self.fail = False
                raise StorageUnavailable("storage: down for a moment")
            return await self.inner.enqueue(tasks)

    cron, _ = make_cron(Flaky(store), clock, {"s": {"cron": "* * * * *", "task": "report"}})
    await cron.run_once(T0)
    assert await cron.run_once(T0 + 60) <= 1.0  # comes back soon for the unsent task
    assert await fired_instants(store) == []
    await cron.run_once(T0 + 61)
    assert await fired_instants(store) == [60]


async def test_a_process_that_dies_between_enqueue_and_record_loses_no_firing(store, clock):
    """The task is stored first and the firing recorded after: a process
    that dies in between leaves a task the next process finds again (by its
    idempotency key) and records, rather than a record without a task."""

    class DiesBeforeTheRecord:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        async def claim_firing(self, *args):
            raise SystemExit("the process died")

    spec = {"s": {"cron": "* * * * *", "task": "report"}}
    doomed, _ = make_cron(DiesBeforeTheRecord(store), clock, spec)
    other, _ = make_cron(store, clock, spec)
    await doomed.run_once(T0)
    await other.run_once(T0)
    with pytest.raises(SystemExit):
        await doomed.run_once(T0 + 60)
    assert await fired_instants(store) == [60]  # the task is there
    assert await store.firings() == {}  # the record is not
    # The other process comes to the instant a little later.
    await other.run_once(T0 + 61)
    assert await fired_instants(store) == [60]  # still one task
    assert (await store.firings())["s"].instant == T0 + 60
    assert other.fired == 0  # it found the task, it did not create one
    # A restart goes on from the record: the next instant, once.
    restarted, _ = make_cron(store, clock, spec)
    await restarted.run_once(T0 + 62)
    await restarted.run_once(T0 + 120)
    await other.run_once(T0 + 120.5)
    assert await fired_instants(store) == [60, 120]


async def test_trigger_fires_now_without_counting_an_instant(store, clock):
    cron, _ = make_cron(store, clock, {"s": {"cron": "@daily", "task": "report"}})
    await cron.run_once(T0)
    stored, created = await cron.trigger("s", T0 + 5)
    assert created and stored.name == "report" and stored.idempotency_key is None
    assert await store.firings() == {}
    with pytest.raises(NotFound, match="no schedule named 'nope'"):
        await cron.trigger("nope", T0)


async def test_a_reload_starts_changed_schedules_afresh(store, clock):
    cron, _ = make_cron(store, clock, {
        "kept": {"cron": "* * * * *", "task": "report"},
        "changed": {"cron": "* * * * *", "task": "report"},
    })
    await cron.run_once(T0)
    new_config = load_config(None, env={}, check_paths=False, overrides={
        "tasks": {"report": {"handler": "builtin:noop"}},
        "schedules": {
            "kept": {"cron": "* * * * *", "task": "report"},
            "changed": {"cron": "*/2 * * * *", "task": "report"},
            "added": {"cron": "* * * * *", "task": "report", "catch_up": True},
        },
    })
    catalog = Catalog(new_config)
    cron.apply(catalog, build_schedules(new_config, catalog), 10.0)
    await cron.run_once(T0 + 65)  # kept: 60 is within the grace; the others start now
    await cron.run_once(T0 + 120)
    assert await fired_instants(store, "kept") == [60, 120]
    assert await fired_instants(store, "changed") == [120]
    assert await fired_instants(store, "added") == [120]


@pytest.mark.parametrize(("schedule", "message"), [
    ({"cron": "* * * * *", "task": "nope"}, "schedules.s.task: unknown task 'nope'"),
    ({"cron": "61 * * * *", "task": "report"}, "schedules.s.cron: '61 * * * *': bad minute"),
    ({"cron": "* * * * *", "task": "report", "timezone": "Nowhere/City"},
     "schedules.s.timezone: unknown time zone"),
    ({"cron": "* * * * *"}, "required field"),
    ({"cron": "* * * * *", "task": "report", "every": 5}, "schedules.s.every: unknown key"),
])
def test_bad_schedules_are_refused_with_a_clear_message(schedule, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, env={}, check_paths=False, overrides={
            "tasks": {"report": {"handler": "builtin:noop"}}, "schedules": {"s": schedule},
        })
    assert message in err.value.message
