"""The batched grouped lease of the SQLite store (sqlite/groups.py) against a
plain model of the turns that Storage.lease describes, over many random
queues: same tasks in the same order, same cursor, same ``blocked``."""

from __future__ import annotations

import random
import sqlite3

import pytest

from tqd.models import Outcome
from tqd.storage.sqlite.groups import heads_after_enqueue, plan_lease
from tqd.storage.sqlite.heads import HeadCache
from tqd.storage.sqlite.schema import MIGRATIONS, _statements
from tqd.storage.sqlite.threads import Connection


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
    # The writer's kind of connection, with its copy of group_heads.
    conn = sqlite3.connect(":memory:", isolation_level=None, factory=Connection)
    conn.heads = HeadCache()
    for migration in MIGRATIONS:
        for statement in _statements(migration):
            conn.execute(statement)
    yield conn
    conn.close()


def _insert(conn, seq, queue, state, priority, grp):
    """One task row, kept in group_heads as op_enqueue keeps it."""
    conn.execute(
        "INSERT INTO tasks (seq, id, name, queue, payload, priority, state, attempts, "
        "max_attempts, attempt_budget, created_at, visibility_timeout, grp, rejoin) "
        "VALUES (?, ?, 'n', ?, x'', ?, ?, 0, 1, 1, 0, 30, ?, ?)",
        (seq, f"t{seq}", queue, priority, state, grp, 1 if grp and state != "pending" else None),
    )
    heads_after_enqueue(conn, seq - 1, [queue])


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
    from tqd.storage.sqlite import consume

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

    monkeypatch.setattr(consume, "plan_lease", spy)
    leased = consume.op_lease(conn, [], "q", n, "w", 1.0)
    assert [t.group for t in leased] == ["a"] * min(n, 2)
    assert leased.limited == ("group" if n > 2 else None)
    # Each group's processing tasks are counted only when the queue's
    # (3) and the lease together could reach the cap. (Otherwise the first
    # turn needs no plan; the next turns are planned without the cap.)
    if 3 + n > 5:
        assert caps == [5]
    else:
        assert set(caps) <= {None}


def _model_of_store(conn, queue, n):
    """The model's lease of ``n`` from what the store holds now."""
    pending = conn.execute(
        "SELECT grp, priority, seq FROM tasks WHERE queue = ? AND state = 'pending'", (queue,)
    ).fetchall()
    busy = dict(conn.execute(
        "SELECT grp, count(*) FROM tasks WHERE queue = ? AND state = 'processing' "
        "AND grp IS NOT NULL GROUP BY grp", (queue,),
    ).fetchall())
    cap, last = conn.execute(
        "SELECT group_concurrency, last_group FROM queues WHERE name = ?", (queue,)
    ).fetchone() or (None, None)
    return model(pending, busy, cap, last, n), cap, last


def _assert_heads_lag_behind(conn):
    # What holds on disk between exact_heads calls (heads.py): every level
    # with fresh pending tasks has a row at or before its first one.
    first = conn.execute(
        "SELECT queue, grp, priority, min(seq) FROM tasks WHERE grp IS NOT NULL "
        "AND rejoin IS NULL AND state = 'pending' GROUP BY queue, grp, priority"
    ).fetchall()
    rows = {(q, g, p): seq for q, g, p, seq in conn.execute("SELECT * FROM group_heads")}
    for queue, grp, priority, seq in first:
        assert rows.get((queue, grp, priority), seq + 1) <= seq, (queue, grp, priority, seq, rows)


def _assert_heads_exact(conn):
    # group_heads: for each level, the first fresh pending task, and no more;
    # the fresh entries from each head on are all pending.
    expect = conn.execute(
        "SELECT queue, grp, priority, min(seq) FROM tasks WHERE grp IS NOT NULL "
        "AND rejoin IS NULL AND state = 'pending' GROUP BY queue, grp, priority"
    ).fetchall()
    assert sorted(conn.execute("SELECT * FROM group_heads").fetchall()) == sorted(expect)
    stray = conn.execute(
        "SELECT t.seq, t.state FROM tasks AS t JOIN group_heads AS h ON t.queue = h.queue "
        "AND t.grp = h.grp AND t.priority = h.priority WHERE t.rejoin IS NULL AND t.seq >= h.seq "
        "AND t.state != 'pending'"
    ).fetchall()
    assert stray == []


#: Operations of the walk below. "fresh" leaves out every way a grouped
#: task rejoins pending and the group cap, so nearly every lease takes its
#: turns from the writer's copy of group_heads (heads.py), which then reads
#: ahead only 2 entries per level at a time, to read again often.
_EVERY_OP = ["enqueue"] * 4 + ["lease"] * 4 + ["settle", "cancel", "delete", "retry", "promote",
                                                "reclaim", "purge", "redrive", "cap"]
_FRESH_OPS = ["enqueue"] * 4 + ["lease"] * 4 + ["settle", "cancel", "delete", "purge"]


@pytest.mark.parametrize("fresh", [False, True], ids=["every-op", "fresh-only"])
@pytest.mark.parametrize("seed", range(30))
def test_every_operation_keeps_the_lease_order_of_the_model(conn, seed, fresh, monkeypatch):
    # Random operations of every kind that adds tasks to a group's pending
    # ones or takes them away; before each lease the store's plan must be
    # the model's over what the store then holds.
    from tqd.clock import FakeClock
    from tqd.models import QueueLimits
    from tqd.storage.sqlite import consume, heads, ops

    from .helpers import TaskMaker

    if fresh:
        monkeypatch.setattr(heads, "AHEAD", 2)
    rnd = random.Random(seed)
    clock = FakeClock(1000.0)
    make = TaskMaker(clock)
    names = [None, "a", "b", "c", "d"]
    leased: list = []  # tasks held under a lease

    def ids_in(state):
        return [r[0] for r in conn.execute("SELECT id FROM tasks WHERE queue = 'q' AND state = ?", (state,))]

    for step in range(150):
        clock.advance(1)
        now = clock.now()
        op = rnd.choice(_FRESH_OPS if fresh else _EVERY_OP)
        if op == "enqueue":
            delay = None if fresh else rnd.choice([None, None, None, 3])
            batch = [make(queue="q", group=rnd.choice(names), priority=rnd.choice([0, 0, 1, 5]),
                          delay=delay, visibility_timeout=5.0)
                     for _ in range(rnd.randint(1, 6))]
            ops.op_enqueue(conn, [], batch)
        elif op == "lease":
            n = rnd.choice([1, 2, 3, 5, 8])
            (seqs, served, blocked), cap, last = _model_of_store(conn, "q", n)
            grouped = conn.execute(
                "SELECT 1 FROM tasks WHERE queue = 'q' AND state = 'pending' AND grp IS NOT NULL"
            ).fetchone()
            if rnd.random() < 0.5:
                # plan_lease reads group_heads, which the writer's copy may
                # have left behind: exact first (and otherwise let the lag
                # stand, so leases also run over a lagging file).
                conn.heads.exact(conn)
                plan = plan_lease(conn, "q", n, cap, last)
                assert (plan.seqs, plan.served, plan.blocked) == (seqs, served, blocked), (seed, step)
            got = consume.op_lease(conn, [], "q", n, "w", now)
            by_id = dict(conn.execute("SELECT id, seq FROM tasks WHERE queue = 'q'").fetchall())
            assert [by_id[t.id] for t in got] == seqs, (seed, step)
            assert got.limited == ("group" if blocked and len(seqs) < n else None), (seed, step)
            if seqs and grouped:  # (a lease of ungrouped tasks alone leaves the cursor)
                cursor = conn.execute("SELECT last_group FROM queues WHERE name = 'q'").fetchone()
                assert cursor == (served,), (seed, step)
            leased += got
        elif op == "settle" and leased:
            t = leased.pop(rnd.randrange(len(leased)))
            kind = "complete" if fresh else rnd.choice(["release", "complete", "fail"])
            outcome = {
                "release": Outcome(task_id=t.id, token=t.lease_token, kind="release"),
                "complete": Outcome(task_id=t.id, token=t.lease_token, kind="complete", result=b"1"),
                "fail": Outcome(task_id=t.id, token=t.lease_token, kind="fail", error={"m": "x"},
                                retry_at=rnd.choice([None, now + 2])),
            }[kind]
            consume.op_settle(conn, [], [outcome], now)
        elif op == "cancel":
            live = ids_in("pending") + ids_in("scheduled")
            if live:
                ops.op_cancel(conn, [], rnd.choice(live), now)
        elif op == "delete":
            gone = ids_in("pending") + ids_in("completed") + ids_in("cancelled")
            if gone:
                ops.op_delete(conn, [], rnd.choice(gone))
        elif op == "retry":
            dead = ids_in("failed") + ids_in("cancelled")
            if dead:
                ops.op_retry(conn, [], rnd.choice(dead), now)
        elif op == "promote":
            ops.op_promote(conn, [], now, 100)
        elif op == "reclaim":
            clock.advance(6)
            ops.op_reclaim(conn, [], "lease_expires_at < ?", (clock.now(),), clock.now(), 100)
            leased.clear()
        elif op == "purge":
            ops.op_purge(conn, [], "q", rnd.choice(["pending", "completed"]), rnd.choice([1, 3, 100]))
        elif op == "redrive":
            ops.op_redrive(conn, [], "q", now, 100)
        elif op == "cap":
            limits = QueueLimits(group_concurrency=rnd.choice([None, 1, 2, 3]))
            ops.op_set_limits(conn, [], "q", limits, now, None)
        _assert_heads_lag_behind(conn)
        if rnd.random() < 0.3:
            conn.heads.exact(conn)
            _assert_heads_exact(conn)
        if rnd.random() < 0.1:
            conn.heads = HeadCache()  # as after a crash: the copy is gone, the lag stays
