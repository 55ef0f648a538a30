"""The SQLite writer's copy of group_heads (sqlite/heads.py): the usual
grouped lease moves heads in memory only, so the file lags behind; a
reopened store (as after a crash) and a failed operation must both find
their way back to the exact heads, leasing every task once, in turn."""

from __future__ import annotations

import sqlite3

import pytest

from tqd.models import Outcome
from tqd.storage.sqlite import SqliteStorage, consume

from .helpers import assert_counts_exact, put


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "tqd.db")


def _heads_on_disk(path: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT grp, seq FROM group_heads WHERE queue = 'q'").fetchall())
    finally:
        conn.close()


def _seq_of(path: str, task_id: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT seq FROM tasks WHERE id = ?", (task_id,)).fetchone()[0]
    finally:
        conn.close()


async def test_a_reopened_store_catches_up_with_heads_that_lagged(path, make):
    s = SqliteStorage(path)
    await s.open()
    by_group = {g: await put(s, *make.many(5, group=g)) for g in ("a", "b", "c")}
    first = await s.lease("q", 3, "w", 1.0)
    second = await s.lease("q", 3, "w", 1.0)
    assert [t.group for t in first + second] == ["a", "b", "c"] * 2
    await s.close()  # nothing writes the heads on the way out, as with kill -9

    # The file still names the first tasks as heads: leased ones.
    assert _heads_on_disk(path) == {g: _seq_of(path, tasks[0].id) for g, tasks in by_group.items()}

    again = SqliteStorage(path)
    await again.open()
    try:
        rest = await again.lease("q", 100, "w", 2.0)
        # Each task once, the turns going on after c (the cursor).
        assert [t.id for t in rest] == [
            by_group[g][i].id for i in range(2, 5) for g in ("a", "b", "c")
        ]
        assert await again.lease("q", 100, "w", 2.0) == []
        await assert_counts_exact(again)
    finally:
        await again.close()
    # That lease moved the heads in memory only: the file still has rows for
    # the levels it emptied, until the next open catches up.
    assert set(_heads_on_disk(path)) == {"a", "b", "c"}
    third = SqliteStorage(path)
    await third.open()
    try:
        assert await third.lease("q", 100, "w", 3.0) == []
    finally:
        await third.close()
    assert _heads_on_disk(path) == {}


async def test_an_operation_that_fails_after_leasing_gives_the_tasks_back_in_turn(path, make):
    s = SqliteStorage(path)
    await s.open()
    try:
        tasks = {g: await put(s, *make.many(3, group=g)) for g in ("a", "b")}

        def lease_then_fail(conn, changes):
            consume.op_lease(conn, changes, "q", 2, "w", 1.0)
            raise RuntimeError("after the lease")

        with pytest.raises(RuntimeError):
            await s._write(lease_then_fail)
        # The failed lease is undone, on disk and in the writer's copy.
        leased = await s.lease("q", 2, "w", 1.0)
        assert [t.id for t in leased] == [tasks["a"][0].id, tasks["b"][0].id]
        done = [Outcome(task_id=t.id, token=t.lease_token, kind="complete", result=b"1")
                for t in leased]
        assert await s.settle(done, 2.0) == [True, True]
        assert [t.id for t in await s.lease("q", 10, "w", 2.0)] == [
            tasks["a"][1].id, tasks["b"][1].id, tasks["a"][2].id, tasks["b"][2].id,
        ]
        await assert_counts_exact(s)
    finally:
        await s.close()


async def test_heads_moved_in_memory_reach_the_file_before_other_uses(path, make):
    # An enqueue and a delete read and move group_heads on disk: they must
    # see where the leases left the heads, not where the file last had them.
    s = SqliteStorage(path)
    await s.open()
    try:
        a = await put(s, *make.many(3, group="a"))
        assert [t.id for t in await s.lease("q", 1, "w", 1.0)] == [a[0].id]
        await s.delete(a[1].id)
        [late] = await put(s, make(group="a"))
        assert _heads_on_disk(path) == {"a": _seq_of(path, a[2].id)}
        assert [t.id for t in await s.lease("q", 10, "w", 1.0)] == [a[2].id, late.id]
        assert await s.lease("q", 10, "w", 1.0) == []
    finally:
        await s.close()


async def test_a_commit_that_fails_after_a_lease_gives_the_tasks_back_in_turn(path, make):
    from tqd.errors import StorageUnavailable

    s = SqliteStorage(path)
    await s.open()
    try:
        tasks = {g: await put(s, *make.many(2, group=g)) for g in ("a", "b")}
        conn = s._writer._conn  # the writer thread is idle between operations
        execute = conn.execute
        failing = [True]

        def commit_fails_once(sql, *args):
            if sql == "COMMIT" and failing[0]:
                failing[0] = False
                raise sqlite3.OperationalError("disk I/O error")
            return execute(sql, *args)

        conn.execute = commit_fails_once  # the instance's, shadowing the class's
        with pytest.raises(StorageUnavailable):
            await s.lease("q", 2, "w", 1.0)
        assert [t.id for t in await s.lease("q", 10, "w", 1.0)] == [
            tasks["a"][0].id, tasks["b"][0].id, tasks["a"][1].id, tasks["b"][1].id,
        ]
        await assert_counts_exact(s)
    finally:
        await s.close()


async def test_a_lagging_head_whose_seq_went_to_another_group_is_caught_up(path, make):
    # The file's head of "a" names a task that was leased, finished and
    # purged; SQLite then hands its seq to the next task, of group "b".
    s = SqliteStorage(path)
    await s.open()
    a = await put(s, *make.many(2, group="a"))
    leased = await s.lease("q", 2, "w", 1.0)
    done = [Outcome(task_id=t.id, token=t.lease_token, kind="complete", result=b"1") for t in leased]
    assert await s.settle(done, 1.0) == [True, True]
    await s.close()
    lagging = _heads_on_disk(path)["a"]
    assert lagging == _seq_of(path, a[0].id)

    again = SqliteStorage(path)
    await again.open()
    try:
        assert await again.purge("q", "completed") == 2
        [b] = await put(again, make(group="b"))
        assert _seq_of(path, b.id) == lagging
        assert [t.id for t in await again.lease("q", 10, "w", 2.0)] == [b.id]
        assert await again.lease("q", 10, "w", 2.0) == []
    finally:
        await again.close()
