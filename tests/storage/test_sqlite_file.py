"""The SQLite backend on a real file: durability across processes' lifetimes
and the lock that keeps a second tqd off a file in use."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import msgspec
import pytest

from tqd.clock import FakeClock
from tqd.errors import ConfigError, StorageUnavailable
from tqd.models import NO_LIMITS, Task, make_error
from tqd.storage.sqlite import SqliteStorage
from tqd.storage.sqlite.schema import MIGRATIONS, TASK_COLUMNS, _statements

from .helpers import TaskMaker, assert_counts_exact, counts, put


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "tqd.db")


@pytest.fixture
def make():
    return TaskMaker(FakeClock())


async def test_acknowledged_tasks_are_in_the_file_after_reopen(path, make):
    first = SqliteStorage(path)
    await first.open()
    batches = [make.many(10, queue=f"q{i}") for i in range(5)]
    await asyncio.gather(*(first.enqueue(b) for b in batches))  # one group commit
    await first.close()

    second = SqliteStorage(path)
    await second.open()
    try:
        for batch in batches:
            for t in batch:
                assert await second.get(t.id) == t
        assert [await counts(second, f"q{i}") for i in range(5)] == [{"pending": 10}] * 5
    finally:
        await second.close()


async def test_a_second_open_of_a_file_in_use_is_refused(path):
    first = SqliteStorage(path)
    await first.open()
    second = SqliteStorage(path)
    try:
        with pytest.raises(ConfigError, match="in use"):
            await second.open()
    finally:
        await first.close()
    await second.open()  # the lock went with the first handle
    await second.close()


async def test_a_file_from_a_newer_tqd_is_refused_and_left_unlocked(path):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    s = SqliteStorage(path)
    with pytest.raises(ConfigError, match="newer"):
        await s.open()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 0")
    conn.close()
    again = SqliteStorage(path)
    await again.open()  # not "in use": the refused open released its lock
    await again.close()


def _file_at_version(path: str, version: int) -> sqlite3.Connection:
    """A file with the first ``version`` migrations applied, as an older tqd left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    for number in range(1, version + 1):
        for statement in _statements(MIGRATIONS[number - 1]):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


async def test_a_version_3_file_migrates_in_place_keeping_its_tasks(path, make):
    old = _file_at_version(path, 3)
    columns = TASK_COLUMNS.removesuffix(", grp")  # the tasks table before groups
    pending, done = make(priority=1), make()
    done.state, done.finished_at, done.attempts = "completed", 5.0, 1
    for t in (pending, done):
        row = [getattr(t, f) for f in Task.__struct_fields__ if f != "group"]
        row[Task.__struct_fields__.index("errors")] = None
        old.execute(f"INSERT INTO tasks ({columns}) VALUES ({', '.join('?' * len(row))})", row)
        old.execute("INSERT INTO queue_counts VALUES ('q', ?, 1)", (t.state,))
    old.execute("INSERT INTO queues(name, paused) VALUES ('q', 0)")
    old.close()

    s = SqliteStorage(path)
    await s.open()
    try:
        assert await s.get(pending.id) == pending
        assert (await s.get(done.id)).state == "completed"
        info = await s.queue("q")
        assert (info.limits, info.config_digest) == (NO_LIMITS, None)
        assert info.counts["pending"] == 1
        [leased] = await s.lease("q", 5, "w", 10.0)
        assert leased.id == pending.id and leased.group is None
        await s.enqueue([make(group="g"), make()])
        assert len(await s.lease("q", 5, "w", 10.0)) == 2
        await assert_counts_exact(s)
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 7
    conn.close()


def test_settling_and_expiring_seek_an_index(path):
    from tqd.storage.sqlite import consume, ops

    conn = _file_at_version(path, len(MIGRATIONS))
    for sql in (consume._COMPLETE, consume._COMPLETE_MANY, consume._RELEASE, consume._FAIL_RETRY, consume._FAIL_DEAD):
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, (None,) * sql.count("?")))
        assert "tasks_id (id=?)" in plan, (sql, plan)
    # The janitor takes the oldest finished tasks of a state from the index,
    # in its order: no scan of the table, no sort.
    plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + ops._EXPIRE, ("failed", 1.0, 10)))
    assert "tasks_finished (state=? AND finished_at<?)" in plan and "TEMP B-TREE" not in plan, plan
    # No index is kept under an IN-list predicate: SQLite evaluates one by
    # building a table, for every row a statement changes.
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"):
        assert " IN (" not in sql.upper(), (name, sql)
    conn.close()


async def test_a_version_4_file_migrates_its_grouped_tasks_in_place(path, make):
    # Migration 6 gives the grouped tasks of a version 4 file their place in
    # group_heads and tasks_group_rejoin: they lease in the same turns after.
    old = _file_at_version(path, 4)
    columns = TASK_COLUMNS
    running = make(group="b")  # b's oldest task, leased when the file was left
    running.state, running.lease_token, running.lease_expires_at = "processing", "tok", 5.0
    tasks = [make(group="a"), make(group="a", priority=5), make(group="b"), make(),
             make(group="a"), make(group="c", delay=10.0)]
    for t in [running, *tasks]:
        row = [getattr(t, f) for f in Task.__struct_fields__]
        row[Task.__struct_fields__.index("errors")] = None
        old.execute(f"INSERT INTO tasks ({columns}) VALUES ({', '.join('?' * len(row))})", row)
    for state, n in (("pending", 5), ("scheduled", 1), ("processing", 1)):
        old.execute("INSERT INTO queue_counts VALUES ('q', ?, ?)", (state, n))
    old.close()

    s = SqliteStorage(path)
    await s.open()
    try:
        # The expired lease comes back to pending: it rejoins group b.
        assert [t.id for t in await s.reclaim_expired(10.0)] == [running.id]
        [new] = await put(s, make(group="a"))
        leased = await s.lease("q", 10, "w", 10.0)
        # "" first, then a (its priority 5 task first), b (the reclaimed task
        # is its oldest), a, b, a, and a's task enqueued after the migration.
        assert [t.id for t in leased] == [tasks[3].id, tasks[1].id, running.id, tasks[0].id,
                                          tasks[2].id, tasks[4].id, new.id]
        due = tasks[5].run_at + 1
        assert await s.promote_due(due) == 1
        assert [t.id for t in await s.lease("q", 10, "w", due)] == [tasks[5].id]
        await assert_counts_exact(s)
    finally:
        await s.close()


def test_every_lease_statement_seeks_an_index(path):
    # A lease must cost O(log n) per task: no statement may scan the tasks
    # table or sort it, however large a group's backlog grows.
    from tqd.storage.sqlite import consume, groups, heads

    conn = _file_at_version(path, len(MIGRATIONS))
    lease = (1.0, None, 1.0, "w", "q")
    statements = [
        (consume._QUEUE_STATE, ("q",)), (consume._LEASE_PLAIN, (*lease, 5)),
        (groups._RING, ("q", "g", None, 5, True, True)), (groups._RING, ("q", "", "g", 5, False, False)),
        (groups._RING_ONE, ("q", "g", None, 1, True, True)),
        (groups._CANDIDATES, ("q", '["g", "h"]', 3, 3)),
        (groups._HEADS_AFTER_LEASE, ("q", '["g"]', "[1, 2]")),
        (groups._HEADS_AFTER_REMOVAL, ("q", '[["g", 0]]')),
        (heads._AHEAD, ("q", '[["g", 0, 1]]', 32)), (heads._WRITE, ("q", '[["g", 0, 2]]')),
        (heads._LEVELS, ("q",)),
    ]
    for sql, args in statements:
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "SCAN tasks" not in plan and "SCAN group_heads" not in plan, (sql, plan)
        assert "TEMP B-TREE" not in plan, (sql, plan)
        assert "USING INDEX tasks_" in plan or "group_heads USING PRIMARY KEY" in plan, (sql, plan)
    # The ring: each group's head from group_heads (its rows in order) and
    # from a seek per group in tasks_group_rejoin, a count in
    # tasks_group_processing, the first ungrouped task from tasks_pending.
    plan = " | ".join(
        r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + groups._RING, ("q", "", None, 5, 1, 1))
    )
    assert "group_heads USING PRIMARY KEY (queue=? AND grp>?)" in plan, plan
    assert "tasks_group_rejoin (queue=? AND grp>?)" in plan, plan
    assert "tasks_group_processing (queue=? AND grp=?)" in plan and "tasks_pending" in plan, plan
    # Each group's tasks come from its own seeks, the ungrouped ones from theirs.
    plan = " | ".join(
        r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + groups._CANDIDATES, ("q", "[]", 1, 1))
    )
    assert "tasks_group_fresh (queue=? AND grp=? AND priority=? AND seq>?)" in plan, plan
    assert "tasks_group_rejoin (queue=? AND grp=?)" in plan and "tasks_pending" in plan, plan
    # The heads read ahead for the writer's copy: a seek per level, from its head on.
    plan = " | ".join(
        r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + heads._AHEAD, ("q", "[]", 32))
    )
    assert "tasks_group_fresh (queue=? AND grp=? AND priority=? AND seq>?)" in plan, plan
    # Catching up after a crash walks each level from its row in its own index.
    plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + heads._CATCH_UP))
    assert "tasks_group_fresh (queue=? AND grp=? AND priority=?" in plan, plan
    # A head moves with one seek in tasks_group_fresh; gone ones are found by
    # their own index, not by walking the queue's levels.
    plan = " | ".join(
        r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + groups._HEADS_AFTER_LEASE, ("q", "[]", "[]"))
    )
    assert "tasks_group_fresh (queue=? AND grp=? AND priority=? AND seq>?)" in plan, plan
    plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + groups._HEADS_DROP, ("q",)))
    assert "group_heads_gone" in plan, plan
    # Leasing the chosen tasks: one rowid lookup each.
    plan = " | ".join(
        r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + consume._LEASE_SEQS, (*lease, "[1, 2]"))
    )
    assert "SCAN tasks" not in plan and "INTEGER PRIMARY KEY" in plan, plan
    conn.close()


async def test_a_batch_keeps_every_value_exactly_and_its_order(path, make):
    """A batch goes to SQLite as one JSON array (ops._insert_rows): every
    float, text and encoded-JSON value reads back exactly as given, encoded
    JSON stays a BLOB, and seq (hence FIFO) follows the batch's order."""
    rng = random.Random(7)
    payloads = [b'"\\u0000 \\" \\\\ \\n \\u2028"', '{"k":"caf\u00e9 \U0001f600"}'.encode(),
                b'[9007199254740993,-1.5e-300,1e308,0.1]', b'null', b'{}']
    tasks = []
    for i in range(1000):
        t = make(payload=payloads[i % len(payloads)], group=f"g{i % 3}" if i % 2 else None)
        created = rng.uniform(1e9, 2e9)
        fields: dict = {"created_at": created, "visibility_timeout": rng.uniform(0.001, 1e6),
                        "timeout": rng.choice([None, rng.random() * 100])}
        if i % 7 == 0:
            fields |= {"state": "completed", "attempts": 1, "started_at": created + rng.random(),
                       "finished_at": created + 1 + rng.random(), "result": payloads[(i // 7) % 5],
                       "errors": [make_error("exception", "x\u00e9\x00y", 1, created + 0.5)]}
        tasks.append(msgspec.structs.replace(t, **fields))
    storage = SqliteStorage(path)
    await storage.open()
    try:
        await storage.enqueue(tasks)
        for t in tasks:
            got = await storage.get(t.id)
            assert got == t
            assert isinstance(got.payload, bytes)
        pending = [t.id for t in tasks if t.state == "pending"]
        leased = await storage.lease("q", len(pending) + 10, "w", 2e9 + 10)
        assert sorted(t.id for t in leased) == sorted(pending)
        for group in (None, "g0", "g1", "g2"):  # in turns over the groups, FIFO within each
            assert [t.id for t in leased if t.group == group] == [
                t.id for t in tasks if t.state == "pending" and t.group == group]
    finally:
        await storage.close()
    conn = sqlite3.connect(path)
    try:
        types = conn.execute("SELECT DISTINCT typeof(payload) FROM tasks UNION ALL "
                             "SELECT DISTINCT typeof(result) FROM tasks WHERE result IS NOT NULL")
        assert sorted(r[0] for r in types) == ["blob", "blob"]
    finally:
        conn.close()


async def test_a_full_disk_fails_each_write_and_logs_once(path, make, caplog):
    # SQLite's I/O errors fail every write while they last: each caller gets
    # StorageUnavailable, the log gets one line (then one a minute), and the
    # count of the others is written when the store closes.
    import logging

    s = SqliteStorage(path)
    await s.open()
    caplog.set_level(logging.INFO, logger="tqd.storage.sqlite")
    conn = s._writer._conn  # the writer thread is idle between operations
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # a full disk, as SQLite sees it
    payload = b'"' + b"x" * 3000 + b'"'
    for _ in range(12):
        with pytest.raises(StorageUnavailable, match="full"):
            await s.enqueue(make.many(5, payload=payload))
    for _ in range(100):  # the log lines are written on the event loop
        if any("SQLite error" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    lines = [r for r in caplog.records if "SQLite" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "ERROR", [r.getMessage() for r in lines]
    assert "database or disk is full" in lines[0].getMessage()
    await s.close()
    summary = [r.getMessage() for r in caplog.records if "like it in the last" in r.getMessage()]
    assert len(summary) == 1 and "11 like it" in summary[0], summary
    assert not any("Traceback" in r.getMessage() or r.exc_info for r in caplog.records)


async def test_one_batch_over_many_queues_counts_each(path, make):
    # The counts of a batch are added in statements of up to 64 (queue,
    # state) pairs (ops._bump); 150 queues take three.
    s = SqliteStorage(path)
    await s.open()
    try:
        await s.enqueue([make(queue=f"q{i}") for i in range(150) for _ in range(2)])
        assert [await counts(s, f"q{i}") for i in (0, 63, 64, 149)] == [{"pending": 2}] * 4
        await assert_counts_exact(s)
    finally:
        await s.close()
