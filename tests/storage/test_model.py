"""A seeded random walk of contract operations checked against a small model.

The model knows each task's state, attempts and lease; after every step the
counts of ``queues()`` must equal the model's, and every few steps each
stored task must match it. Lease choice is checked by the contract's rule
(no pending task left behind outranks a leased one), not by a FIFO order
the contract leaves to the backend for re-queued tasks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from tqd.errors import Conflict
from tqd.models import FINISHED_STATES, Outcome, make_error

from .helpers import all_tasks

QUEUES = ("a", "b")


@dataclass
class Model:
    queue: str
    priority: int
    state: str
    max_attempts: int
    budget: int
    attempts: int = 0
    run_at: float | None = None
    token: str | None = None
    expires: float = 0.0


class Walk:
    def __init__(self, storage, make, clock, rng):
        self.s, self.make, self.clock, self.rng = storage, make, clock, rng
        self.tasks: dict[str, Model] = {}

    def pick(self, *states):
        ids = [i for i, m in self.tasks.items() if not states or m.state in states]
        return self.rng.choice(ids) if ids else None

    async def enqueue(self):
        batch = []
        for _ in range(self.rng.randint(1, 3)):
            delay = self.rng.choice([None, None, 5.0])
            t = self.make(
                queue=self.rng.choice(QUEUES),
                priority=self.rng.randint(0, 2),
                delay=delay,
                max_attempts=self.rng.randint(1, 3),
            )
            batch.append(t)
        for r, t in zip(await self.s.enqueue(batch), batch, strict=True):
            assert r.created
            self.tasks[t.id] = Model(
                t.queue, t.priority, t.state, t.max_attempts, t.attempt_budget, run_at=t.run_at
            )

    async def lease(self):
        queue, now = self.rng.choice(QUEUES), self.clock.now()
        leased = await self.s.lease(queue, self.rng.randint(1, 3), "w", now)
        for t in leased:
            m = self.tasks[t.id]
            assert (m.state, m.queue) == ("pending", queue)
            m.state, m.token, m.expires = "processing", t.lease_token, t.lease_expires_at
        left = [
            m.priority for m in self.tasks.values() if m.state == "pending" and m.queue == queue
        ]
        if leased and left:
            assert max(left) <= min(t.priority for t in leased)

    async def settle(self):
        tid = self.pick("processing")
        if tid is None:
            return
        m, now = self.tasks[tid], self.clock.now()
        kind = self.rng.choice(["complete", "retry", "dead", "release", "stale"])
        error = make_error("exception", "x", m.attempts + 1, now)
        outcome = Outcome(task_id=tid, token=m.token, kind="fail", error=error)
        if kind == "complete":
            outcome.kind = "complete"
        elif kind == "release":
            outcome.kind = "release"
        elif kind == "retry":
            outcome.retry_at = now + self.rng.choice([0.0, 3.0])
        elif kind == "stale":
            outcome.token = "stale"
        [ok] = await self.s.settle([outcome], now)
        assert ok == (kind != "stale")
        if kind == "stale":
            return
        m.token = None
        if kind == "release":
            m.state = "pending"
            return
        m.attempts += 1
        m.state = {"complete": "completed", "retry": "scheduled", "dead": "failed"}[kind]
        m.run_at = outcome.retry_at if kind == "retry" else m.run_at

    async def tick(self):
        now = self.clock.advance(self.rng.choice([1.0, 4.0, 31.0]))
        due = {i for i, m in self.tasks.items() if m.state == "scheduled" and m.run_at <= now}
        assert await self.s.promote_due(now) == len(due)
        for i in due:
            self.tasks[i].state = "pending"
        lost = {i for i, m in self.tasks.items() if m.state == "processing" and m.expires < now}
        reclaimed = await self.s.reclaim_expired(now)
        assert {t.id for t in reclaimed} == lost
        for t in reclaimed:
            m = self.tasks[t.id]
            m.attempts += 1
            m.state = "failed" if m.attempts >= m.max_attempts else "pending"
            m.token = None
            assert (t.state, t.attempts) == (m.state, m.attempts)

    async def by_hand(self):
        tid, now = self.pick(), self.clock.now()
        if tid is None:
            return
        m = self.tasks[tid]
        op = self.rng.choice(["cancel", "retry", "delete"])
        allowed = {
            "cancel": m.state not in FINISHED_STATES,
            "retry": m.state in ("failed", "cancelled"),
            "delete": m.state != "processing",
        }[op]
        try:
            if op == "delete":
                await self.s.delete(tid)
            else:
                await getattr(self.s, op)(tid, now)
        except Conflict:
            assert not allowed, (op, m.state)
            return
        assert allowed, (op, m.state)
        if op == "delete":
            del self.tasks[tid]
        elif op == "cancel":
            m.state, m.token = "cancelled", None
        else:
            m.state, m.max_attempts = "pending", m.attempts + m.budget

    async def bulk(self):
        queue, now = self.rng.choice(QUEUES), self.clock.now()
        if self.rng.random() < 0.5:
            state = self.rng.choice(["pending", "scheduled", "completed", "failed", "cancelled"])
            gone = [i for i, m in self.tasks.items() if (m.queue, m.state) == (queue, state)]
            assert await self.s.purge(queue, state) == len(gone)
            for i in gone:
                del self.tasks[i]
        else:
            back = [i for i, m in self.tasks.items() if (m.queue, m.state) == (queue, "failed")]
            assert await self.s.redrive(queue, now) == len(back)
            for i in back:
                m = self.tasks[i]
                m.state, m.max_attempts = "pending", m.attempts + m.budget

    async def check_counts(self):
        expected = {}
        for m in self.tasks.values():
            per = expected.setdefault(m.queue, {})
            per[m.state] = per.get(m.state, 0) + 1
        kept = {q.name: {s: n for s, n in q.counts.items() if n} for q in await self.s.queues()}
        assert {q: c for q, c in kept.items() if c} == expected

    async def check_tasks(self):
        stored = {t.id: t for t in await all_tasks(self.s)}
        assert set(stored) == set(self.tasks)
        for tid, m in self.tasks.items():
            t = stored[tid]
            assert (t.state, t.attempts, t.max_attempts) == (m.state, m.attempts, m.max_attempts)
            assert (t.lease_token is not None) == (m.state == "processing")


@pytest.mark.parametrize("seed", range(4))
async def test_a_random_walk_keeps_state_and_counts_exact(storage, make, clock, seed):
    rng = random.Random(seed)
    walk = Walk(storage, make, clock, rng)
    steps = (
        [walk.enqueue] * 3
        + [walk.lease] * 3
        + [walk.settle] * 3
        + [walk.tick] * 2
        + [
            walk.by_hand,
            walk.bulk,
        ]
    )
    for i in range(150):
        await rng.choice(steps)()
        await walk.check_counts()
        if i % 10 == 9:
            await walk.check_tasks()
    await walk.check_tasks()
    # Guard the walk itself: it must have reached most of the life cycle.
    assert len({m.state for m in walk.tasks.values()}) >= 3


def test_rfc3339_renders_each_time_even_right_after_another():
    # rfc3339 keeps its last answer (a batch's tasks share created_at): a
    # different time must never get it.
    from tqd.models import rfc3339

    a, b = 1_764_338_400.25, 1_764_338_400.250001
    assert [rfc3339(t) for t in (a, a, b, a, 0.0, b)] == [
        "2025-11-28T14:00:00.250000Z", "2025-11-28T14:00:00.250000Z",
        "2025-11-28T14:00:00.250001Z", "2025-11-28T14:00:00.250000Z",
        "1970-01-01T00:00:00.000000Z", "2025-11-28T14:00:00.250001Z",
    ]
    assert rfc3339(None) is None


def test_valid_name_answers_the_same_from_its_cache():
    from tqd.models import valid_name

    for _ in range(2):  # the second round comes from the cache
        assert [valid_name(n) for n in ("tqd.noop", "a", "-a", "a/b", "x" * 128, "x" * 129, "")] == [
            True, True, False, False, True, False, False]
