"""A model-based test of the store: one Hypothesis state machine drives SQLite,
Redis through fakeredis and a real redis-server in lockstep.

Every rule applies the same operation, at the same FakeClock time, to every
backend: enqueue (with idempotency keys), lease, extend, complete, fail (retry
and dead), release, a settle with a stale token, cancel, retry, delete,
redrive, advancing the clock, promote_due and reclaim_expired. After every
step, on every backend:

- each task is in exactly one state (its field, and exactly one state listing);
- a processing task holds one lease (token, worker, deadline), which is live
  (deadline > now) unless it expired after the last reclaim; no other task
  holds one;
- attempts never decrease;
- the queue counts equal the tasks stored;
- and the backends agree: the same tasks with the same fields (lease tokens,
  which are random, only in whether there is one), and the same answer to
  every operation (the same error, the same accepted settles).

Leases may pick different tasks on different backends where the contract
leaves the order open (tasks that went back to pending: SQLite keeps their
first place, Redis puts them last), so a lease takes a number of tasks that
both orders agree on: whole priority levels, or a prefix of a level that
holds only tasks that have waited in it since they were enqueued.

Short by default (CI); ``TQD_MODEL_LONG=1`` runs many more and longer
examples. Each run prints how many examples and steps it made.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import fakeredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tqd.clock import FakeClock
from tqd.errors import TqdError
from tqd.models import FINISHED_STATES, STATES, Outcome, Task, make_error
from tqd.storage.base import Storage
from tqd.storage.redis import RedisStorage
from tqd.storage.sqlite import SqliteStorage

from .helpers import TaskMaker

QUEUES = ("a", "b")
VISIBILITY = 30.0
WORKER = "w"

# CI: few examples, the same ones on every run (derandomize), so the run is
# short and cannot flake; the long run explores new ones each time.
settings.register_profile(
    "tqd-model-ci", max_examples=20, stateful_step_count=50, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "tqd-model-long", max_examples=400, stateful_step_count=120, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PROFILE = "tqd-model-long" if os.environ.get("TQD_MODEL_LONG") else "tqd-model-ci"


class Stats:
    """Examples, steps and rules run, across the machines of one test."""

    examples = 0
    steps = 0
    rules: Counter[str] = Counter()


def counted(fn: Callable[..., None]) -> Callable[..., None]:
    """Count the runs of a rule (for the figures the test prints)."""

    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> None:
        Stats.rules[fn.__name__] += 1
        fn(self, *args, **kwargs)

    return run


def snapshot(task: Task) -> tuple:
    """What must be equal on every backend: every field but the lease token's value."""
    errors = tuple((e["attempt"], e["kind"], e["message"], e["at"]) for e in task.errors)
    return (
        task.id, task.name, task.queue, bytes(task.payload), task.priority, task.state,
        task.attempts, task.max_attempts, task.attempt_budget, task.created_at, task.run_at,
        task.started_at, task.finished_at, task.result, errors, task.idempotency_key,
        task.timeout, task.visibility_timeout, task.worker, task.lease_token is not None,
        task.lease_expires_at,
    )


def error_of(exc: BaseException) -> tuple[str, str]:
    return (type(exc).__name__, getattr(exc, "code", ""))


class LockstepStores(RuleBasedStateMachine):
    """The machine; ``backends`` (set by the test) makes the stores of one example."""

    backends: dict[str, Callable[[], Storage]] = {}
    loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.make = TaskMaker(self.clock)
        self.folder = tempfile.mkdtemp(prefix="tqd-model-")
        self.stores: dict[str, Storage] = {}
        #: Per backend, the lease token of each task it holds as processing.
        self.tokens: dict[str, dict[str, str]] = {}
        #: Per backend, tokens that were good once and are stale now.
        self.stale: dict[str, dict[str, str]] = {}
        #: The model: every task id and what all backends agree it is.
        self.state: dict[str, str] = {}
        self.queue_of: dict[str, str] = {}
        self.priority: dict[str, int] = {}
        #: Pending tasks that have waited in pending since their enqueue.
        self.fresh: set[str] = set()
        self.attempts: dict[str, int] = {}
        self.max_attempts: dict[str, int] = {}
        #: When the lease of each processing task runs out.
        self.expires: dict[str, float] = {}
        #: Time of the last reclaim_expired; a lease may be expired only after it.
        self.reclaimed_at = float("-inf")
        self.keys = 0
        Stats.examples += 1

    # -- plumbing -------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def each(self, call: Callable[[str, Storage], Coroutine[Any, Any, Any]]) -> dict[str, Any]:
        """Run ``call`` on every backend; return each one's result, or its error as
        ``("error", name, code)``."""
        out: dict[str, Any] = {}
        for name, store in self.stores.items():
            try:
                out[name] = self.run(call(name, store))
            except TqdError as exc:
                out[name] = ("error", *error_of(exc))
        return out

    def agree(self, results: dict[str, Any], what: str) -> Any:
        values = list(results.values())
        assert all(v == values[0] for v in values), f"{what}: backends disagree: {results}"
        return values[0]

    def ids_in(self, *states: str) -> list[str]:
        return sorted(i for i, s in self.state.items() if not states or s in states)

    @initialize()
    def open_stores(self) -> None:
        for name, factory in self.backends.items():
            store = factory(self.folder) if name == "sqlite" else factory()
            self.run(store.open())
            self.stores[name] = store
            self.tokens[name] = {}
            self.stale[name] = {}

    def teardown(self) -> None:
        for store in self.stores.values():
            self.run(store.close())
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- producing ------------------------------------------------------------

    @rule(
        specs=st.lists(
            st.tuples(
                st.sampled_from(QUEUES),
                st.integers(0, 2),  # priority
                st.sampled_from([None, None, 2.0, 40.0]),  # delay
                st.integers(1, 3),  # max_attempts
                st.sampled_from([None, None, None, "k1", "k2", "new"]),  # idempotency key
            ),
            min_size=1, max_size=3,
        )
    )
    @counted
    def enqueue(self, specs: list[tuple]) -> None:
        tasks = []
        for queue, priority, delay, attempts, key in specs:
            if key == "new":
                self.keys += 1
                key = f"k{self.keys + 2}"
            tasks.append(self.make(queue=queue, priority=priority, delay=delay,
                                   max_attempts=attempts, key=key, visibility_timeout=VISIBILITY))
        results = self.each(lambda _, s: s.enqueue(tasks))
        shown = self.agree(
            {n: r if r and r[0] == "error" else [(x.task.id, x.created) for x in r]
             for n, r in results.items()},
            "enqueue",
        )
        for task, (task_id, created) in zip(tasks, shown, strict=True):
            if created:
                assert task_id == task.id
                self.state[task.id] = task.state
                self.queue_of[task.id] = task.queue
                self.priority[task.id] = task.priority
                self.attempts[task.id] = 0
                self.max_attempts[task.id] = task.max_attempts
                if task.state == "pending":
                    self.fresh.add(task.id)
            else:
                assert task_id in self.state and task.idempotency_key is not None

    # -- consuming ------------------------------------------------------------

    def _cuts(self, queue: str) -> list[int]:
        """How many tasks a lease of ``queue`` may ask for so that every backend
        picks the same ones (see the module doc)."""
        pending = [i for i in self.ids_in("pending") if self.queue_of[i] == queue]
        levels: dict[int, list[str]] = {}
        for i in pending:
            levels.setdefault(self.priority[i], []).append(i)
        cuts, taken = [], 0
        for prio in sorted(levels, reverse=True):
            level = levels[prio]
            if all(i in self.fresh for i in level):
                cuts.extend(range(taken + 1, taken + len(level)))
            taken += len(level)
            cuts.append(taken)
        return cuts

    @precondition(lambda self: self.ids_in("pending"))
    @rule(data=st.data(), pick=st.integers(0, 50))
    @counted
    def lease(self, data: st.DataObject, pick: int) -> None:
        queue = data.draw(st.sampled_from(sorted({self.queue_of[i] for i in self.ids_in("pending")})))
        cuts = self._cuts(queue)
        limit = cuts[pick % len(cuts)] if cuts else 1
        now = self.clock.now()
        results = self.each(lambda _, s: s.lease(queue, limit, WORKER, now))
        leased = self.agree({n: sorted(t.id for t in r) for n, r in results.items()}, "lease")
        assert len(leased) == (limit if cuts else 0)
        for name, tasks in results.items():
            for t in tasks:
                assert t.state == "processing" and t.lease_expires_at == now + VISIBILITY
                self.tokens[name][t.id] = t.lease_token
                self.expires[t.id] = t.lease_expires_at
        for i in leased:
            assert self.state[i] == "pending" and self.queue_of[i] == queue
            self.state[i] = "processing"
            self.fresh.discard(i)

    def extend(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(self.ids_in("processing")), min_size=1,
                                 max_size=3, unique=True))
        now = self.clock.now()
        held = self.each(lambda n, s: s.extend([(i, self.tokens[n][i]) for i in ids], now))
        assert self.agree(held, "extend") == [True] * len(ids)
        for i in ids:
            self.expires[i] = now + VISIBILITY

    @precondition(lambda self: self.ids_in("processing", "pending"))
    @rule(data=st.data(), how=st.sampled_from(
        ["extend", "complete", "retry", "retry-now", "dead", "release"]))
    def work(self, data: st.DataObject, how: str) -> None:
        """What a worker does with a task it holds: extend its lease or settle it
        (leasing first when it holds none)."""
        if not self.ids_in("processing"):
            self.lease(data, 0)
        Stats.rules[f"work:{how}"] += 1
        if how == "extend":
            self.extend(data)
        else:
            self.settle(data, how)

    def settle(self, data: st.DataObject, how: str) -> None:
        task_id = data.draw(st.sampled_from(self.ids_in("processing")))
        now = self.clock.now()
        attempt = self.attempts[task_id] + 1
        if how.startswith("retry") and attempt >= self.max_attempts[task_id]:
            how = "dead"  # as the pool decides: no retry after the last attempt

        def outcome(name: str) -> Outcome:
            token = self.tokens[name][task_id]
            if how == "complete":
                return Outcome(task_id=task_id, token=token, kind="complete", result=b'"done"')
            if how == "release":
                return Outcome(task_id=task_id, token=token, kind="release")
            retry_at = {"retry": now + 3.0, "retry-now": now, "dead": None}[how]
            error = make_error("exception", f"boom {attempt}", attempt, now)
            return Outcome(task_id=task_id, token=token, kind="fail", error=error, retry_at=retry_at)

        accepted = self.each(lambda n, s: s.settle([outcome(n)], now))
        assert self.agree(accepted, "settle") == [True]
        for name in self.stores:
            self.stale[name][task_id] = self.tokens[name].pop(task_id)
        if how == "release":
            self.state[task_id] = "pending"
            return
        self.attempts[task_id] = attempt
        self.state[task_id] = {"complete": "completed", "retry": "scheduled",
                               "retry-now": "scheduled", "dead": "failed"}[how]

    @precondition(lambda self: any(self.stale[n] for n in self.stale))
    @rule(data=st.data(), kind=st.sampled_from(["complete", "fail", "release", "extend"]))
    def stale_token(self, data: st.DataObject, kind: str) -> None:
        """A worker that lost its lease reports anyway: refused, nothing changes."""
        Stats.rules[f"stale_token:{kind}"] += 1
        first = next(iter(self.stale))
        task_id = data.draw(st.sampled_from(sorted(self.stale[first])))
        now = self.clock.now()
        before = self.observe()

        async def call(name: str, store: Storage) -> list[bool]:
            token = self.stale[name][task_id]
            if kind == "extend":
                return await store.extend([(task_id, token)], now)
            error = make_error("exception", "late", 1, now) if kind == "fail" else None
            return await store.settle(
                [Outcome(task_id=task_id, token=token, kind=kind, error=error)], now)

        assert self.agree(self.each(call), "stale settle") == [False]
        assert self.observe() == before

    # -- by hand ----------------------------------------------------------------

    @precondition(lambda self: self.state)
    @rule(data=st.data(), op=st.sampled_from(["cancel", "retry", "delete", "redrive"]))
    def by_hand(self, data: st.DataObject, op: str) -> None:
        """What a person does through the API: cancel, retry, delete, redrive."""
        Stats.rules[f"by_hand:{op}"] += 1
        if op == "redrive":
            self.redrive(data.draw(st.sampled_from(QUEUES)))
            return
        task_id = data.draw(st.sampled_from(self.ids_in()))
        state, now = self.state[task_id], self.clock.now()
        allowed = {"cancel": state not in FINISHED_STATES,
                   "retry": state in ("failed", "cancelled"),
                   "delete": state != "processing"}[op]

        async def call(_: str, store: Storage) -> Any:
            if op == "delete":
                await store.delete(task_id)
                return "deleted"
            return (await getattr(store, op)(task_id, now)).state

        answer = self.agree(self.each(call), op)
        if not allowed:
            assert answer == ("error", "Conflict", "conflict"), (op, state, answer)
            return
        assert answer == {"cancel": "cancelled", "retry": "pending", "delete": "deleted"}[op]
        if state == "processing":  # cancel revoked the lease
            for name in self.stores:
                self.stale[name][task_id] = self.tokens[name].pop(task_id)
        if op == "delete":
            for name in self.stores:
                self.stale[name].pop(task_id, None)
            for table in (self.state, self.queue_of, self.priority, self.attempts,
                          self.max_attempts):
                del table[task_id]
        else:
            self.state[task_id] = answer
        self.fresh.discard(task_id)

    def redrive(self, queue: str) -> None:
        back = [i for i in self.ids_in("failed") if self.queue_of[i] == queue]
        moved = self.agree(self.each(lambda _, s: s.redrive(queue, self.clock.now())), "redrive")
        assert moved == len(back)
        for i in back:
            self.state[i] = "pending"

    # -- time and the roles ---------------------------------------------------

    @rule(op=st.sampled_from(["advance 0.5s", "advance 3s", "advance 31s", "advance 45s",
                              "promote_due", "reclaim_expired"]))
    def time_passes(self, op: str) -> None:
        """The clock moves, and the scheduler and the supervisor run."""
        Stats.rules[f"time:{op}"] += 1
        if op.startswith("advance"):
            self.clock.advance(float(op.split()[1].removesuffix("s")))
        elif op == "promote_due":
            self.promote_due()
        else:
            self.reclaim_expired()

    def promote_due(self) -> None:
        now = self.clock.now()
        due = self.agree(self.each(lambda _, s: s.promote_due(now)), "promote_due")
        stored = self.observe()
        promoted = [i for i in self.ids_in("scheduled") if stored[i][5] == "pending"]
        assert due == len(promoted)
        for i in promoted:
            self.state[i] = "pending"

    def reclaim_expired(self) -> None:
        now = self.clock.now()
        results = self.each(lambda _, s: s.reclaim_expired(now))
        back = self.agree({n: sorted((t.id, t.state, t.attempts) for t in r)
                           for n, r in results.items()}, "reclaim_expired")
        expired = sorted(i for i in self.ids_in("processing") if self.expires[i] < now)
        assert [i for i, _, _ in back] == expired
        for task_id, state, attempts in back:
            assert attempts == self.attempts[task_id] + 1
            # the lost attempt counts: out of attempts means failed
            assert state == ("failed" if attempts >= self.max_attempts[task_id] else "pending")
            self.state[task_id], self.attempts[task_id] = state, attempts
            for name in self.stores:
                self.stale[name][task_id] = self.tokens[name].pop(task_id)
        self.reclaimed_at = now

    # -- what is checked after every step -------------------------------------

    def listing(self, store: Storage, state: str | None = None) -> list[Task]:
        """Every task (of ``state``): one page, as the machine stores few."""
        page = self.run(store.list(state=state, limit=1000))
        assert page.next_cursor is None
        return page.tasks

    def observe(self) -> dict[str, tuple]:
        """Every stored task's snapshot, the same on every backend (or fail)."""
        seen = {n: self.listing(s) for n, s in self.stores.items()}
        return self.agree({n: {t.id: snapshot(t) for t in r} for n, r in seen.items()}, "tasks")

    @invariant()
    def invariants_hold_on_every_backend(self) -> None:
        """The checks of the module doc, after every step."""
        if not self.stores:
            return
        Stats.steps += 1
        now = self.clock.now()
        snapshots: dict[str, dict[str, tuple]] = {}
        for name, store in self.stores.items():
            # each task in exactly one state: its field, and one state listing
            tasks = {t.id: t for t in self.listing(store)}
            assert set(tasks) == set(self.state), name
            listed: dict[str, str] = {}
            for state in STATES:
                for t in self.listing(store, state):
                    assert t.state == state and t.id not in listed, (name, t.id, state)
                    listed[t.id] = state
            assert listed == {i: t.state for i, t in tasks.items()}, name
            # leases: held by processing tasks only, one each, live unless
            # they ran out after the last reclaim
            for t in tasks.values():
                if t.state == "processing":
                    assert t.lease_token == self.tokens[name][t.id] and t.worker == WORKER, (name, t)
                    assert t.lease_expires_at is not None
                    assert t.lease_expires_at > now or t.lease_expires_at >= self.reclaimed_at, (
                        name, t.id, t.lease_expires_at, now, self.reclaimed_at)
                else:
                    assert t.lease_token is None and t.lease_expires_at is None, (name, t)
                    assert t.worker is None or t.state in FINISHED_STATES, (name, t)
            assert set(self.tokens[name]) == {i for i, t in tasks.items() if t.state == "processing"}
            # counts: what queues() keeps equals the tasks
            expected: dict[str, dict[str, int]] = {}
            for t in tasks.values():
                per = expected.setdefault(t.queue, {})
                per[t.state] = per.get(t.state, 0) + 1
            kept = {q.name: {s: n for s, n in q.counts.items() if n}
                    for q in self.run(store.queues())}
            assert {q: c for q, c in kept.items() if c} == expected, (name, kept, expected)
            snapshots[name] = {i: snapshot(t) for i, t in tasks.items()}
        # the backends agree, and with the model
        stored = self.agree(snapshots, "tasks")
        for task_id, snap in stored.items():
            state, attempts, max_attempts = snap[5], snap[6], snap[7]
            assert state == self.state[task_id], (task_id, state, self.state[task_id])
            # attempts never decrease, and never pass the attempts granted
            assert self.attempts[task_id] <= attempts <= max_attempts, (task_id, snap)
            self.attempts[task_id] = attempts
            self.max_attempts[task_id] = max_attempts  # a retry by hand grants more


def _backends(redis_url: str) -> dict[str, Callable[..., Storage]]:
    counter = iter(range(10**9))
    return {
        "sqlite": lambda folder: SqliteStorage(os.path.join(folder, "tqd.db")),
        "fakeredis": lambda: RedisStorage(
            "redis://fakeredis", client=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        ),
        "redis": lambda: RedisStorage(redis_url, prefix=f"tqdmodel-{os.getpid()}-{next(counter)}"),
    }


def test_sqlite_and_redis_agree_step_by_step(redis_server: Any) -> None:
    loop = asyncio.new_event_loop()
    Stats.examples = Stats.steps = 0
    Stats.rules.clear()
    try:
        LockstepStores.backends = _backends(redis_server.url)
        LockstepStores.loop = loop
        run_state_machine_as_test(LockstepStores, settings=settings.get_profile(PROFILE))
    finally:
        loop.close()
    print(f"\nstate machine ({PROFILE}): {Stats.examples} examples, {Stats.steps} steps "
          f"on {', '.join(LockstepStores.backends)}; rules run: "
          + ", ".join(f"{name} {n}" for name, n in sorted(Stats.rules.items())))
    assert Stats.examples > 0 and Stats.steps > Stats.examples
    # every rule ran (a precondition that never holds would hide a rule)
    expected = {"enqueue", "lease"} | {
        f"work:{how}" for how in ("extend", "complete", "retry", "retry-now", "dead", "release")
    } | {f"stale_token:{k}" for k in ("complete", "fail", "release", "extend")} | {
        f"by_hand:{op}" for op in ("cancel", "retry", "delete", "redrive")
    } | {f"time:{op}" for op in ("advance 0.5s", "advance 3s", "advance 31s", "advance 45s",
                                 "promote_due", "reclaim_expired")}
    assert set(Stats.rules) == expected, expected - set(Stats.rules)

