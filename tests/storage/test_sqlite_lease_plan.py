"""The batched grouped lease of the SQLite store (sqlite/groups.py) against a
plain model of the turns that Storage.lease describes, over many random
queues: same tasks in the same order, same cursor, same ``blocked``."""

from __future__ import annotations

import random
import sqlite3

import pytest

from tqd.storage.sqlite.groups import plan_lease
from tqd.storage.sqlite.schema import MIGRATIONS, _statements


def model(pending, busy, cap, last, n):
    """One task at a time, as the docstring of Storage.lease tells it."""
    queues: dict[str, list[int]] = {}
    for grp, _priority, seq in sorted(pending, key=lambda t: (-t[1], t[2])):
        queues.setdefault(grp or "", []).append(seq)
    names = sorted(g for g in queues if g)
    if last is None:
        ring = ["", *names]
    elif last == "":
        ring = [*names, ""]
    else:
        ring = [g for g in names if g > last] + [""] + [g for g in names if g <= last]
    taken: list[int] = []
    served, blocked = None, False
    used = dict.fromkeys(ring, 0)

    def take(g):
        nonlocal served, blocked
        left = len(queues.get(g, ())) - used[g]
        if g and cap is not None and busy.get(g, 0) + used[g] >= cap:
            blocked = blocked or left > 0
            return False
        if left <= 0:
            return False
        taken.append(queues[g][used[g]])
        used[g] += 1
        served = g
        return True

    live = []
    for g in ring:
        if take(g):
            live.append(g)
            if len(taken) >= n:
                return taken, served, blocked
    while live and len(taken) < n:
        still = []
        for g in live:
            if take(g):
                still.append(g)
                if len(taken) >= n:
                    break
        live = still
    return taken, served, blocked


@pytest.fixture
def conn():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for migration in MIGRATIONS:
        for statement in _statements(migration):
            conn.execute(statement)
    yield conn
    conn.close()


def _insert(conn, seq, queue, state, priority, grp):
    conn.execute(
        "INSERT INTO tasks (seq, id, name, queue, payload, priority, state, attempts, "
        "max_attempts, attempt_budget, created_at, visibility_timeout, grp) "
        "VALUES (?, ?, 'n', ?, x'', ?, ?, 0, 1, 1, 0, 30, ?)",
        (seq, f"t{seq}", queue, priority, state, grp),
    )


@pytest.mark.parametrize("seed", range(40))
def test_the_batched_plan_plays_the_turns_of_the_model(conn, seed):
    rnd = random.Random(seed)
    for case in range(25):
        queue = f"q{case}"
        names = [f"g{i:02d}" for i in rnd.sample(range(40), rnd.randint(0, 12))]
        pending, busy, seq = [], {}, case * 10_000
        # Skewed sizes: some groups one task, some a backlog, some none.
        for g in [*names, None]:
            for _ in range(rnd.choice([0, 1, 1, 2, 3, rnd.randint(4, 60)])):
                seq += 1
                item = (g, rnd.choice([0, 0, 0, 1, 5]), seq)
                pending.append(item)
                _insert(conn, seq, queue, "pending", item[1], g)
            if g is not None and rnd.random() < 0.4:
                busy[g] = rnd.randint(1, 3)
                for _ in range(busy[g]):
                    seq += 1
                    _insert(conn, seq, queue, "processing", 0, g)
        cap = rnd.choice([None, None, 1, 2, 3, 5])
        last = rnd.choice([None, "", *(names or [""]), "g05", "zz", "a"])
        n = rnd.choice([1, 2, 3, 7, 10, 32, 100, 500])
        plan = plan_lease(conn, queue, n, cap, last)
        expect = model(pending, busy, cap, last, n)
        assert (plan.seqs, plan.served, plan.blocked) == expect, (seed, case, cap, last, n)


@pytest.mark.parametrize(
    ("n", "cap", "last", "most"),
    [(32, None, None, 2), (32, 1000, None, 3), (500, 1000, "g050", 4), (5000, None, "g050", 3)],
)
def test_a_lease_reads_with_a_few_statements_not_one_per_task(conn, n, cap, last, most):
    seq = 0
    for g in range(100):
        for _ in range(60):
            seq += 1
            _insert(conn, seq, "q", "pending", 0, f"g{g:03d}")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    plan = plan_lease(conn, "q", n, cap, last)
    conn.set_trace_callback(None)
    assert len(plan.seqs) == min(n, seq)
    assert len(statements) <= most, statements


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_a_cap_that_cannot_bind_is_not_counted_and_one_that_can_still_holds(conn, n, monkeypatch):
    from tqd.storage.sqlite import ops

    # Group "a" has 3 processing of a cap of 5: it may take 2 more.
    seq = 0
    for state, count in (("processing", 3), ("pending", 4)):
        for _ in range(count):
            seq += 1
            _insert(conn, seq, "q", state, 0, "a")
    conn.execute("INSERT INTO queue_counts VALUES ('q', 'processing', 3), ('q', 'pending', 4)")
    conn.execute("INSERT INTO queues(name, group_concurrency) VALUES ('q', 5)")
    caps = []

    def spy(conn, queue, n, group_cap, last):
        caps.append(group_cap)
        return plan_lease(conn, queue, n, group_cap, last)

    monkeypatch.setattr(ops, "plan_lease", spy)
    leased = ops.op_lease(conn, [], "q", n, "w", 1.0)
    assert [t.group for t in leased] == ["a"] * min(n, 2)
    assert leased.limited == ("group" if n > 2 else None)
    # Each group's processing tasks are counted only when the queue's
    # (3) and the lease together could reach the cap.
    assert caps == [5 if 3 + n > 5 else None]
