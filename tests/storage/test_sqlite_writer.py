"""The SQLite writer thread (threads.Writer) on a real file: one transaction
per group, and a failing operation undoes exactly its own writes, whether it
ran alone, in a group with others, or merged with calls of its kind."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from tqd.errors import Conflict
from tqd.storage.sqlite.threads import Writer, connect, mergeable


@mergeable
def put_rows(conn, changes, items):
    """Insert each item; an item "bad" fails the whole call after its writes."""
    out = []
    for item in items:
        conn.execute("INSERT INTO t(v) VALUES (?)", (item,))
        if item == "bad":
            raise Conflict("bad item")
        changes.append(item)
        out.append(item.upper())
    return out


def put_one(conn, changes, item):
    """Not mergeable: one insert, failing after it for "bad"."""
    return put_rows(conn, changes, [item])


@pytest.fixture
async def writer(tmp_path):
    path = str(tmp_path / "w.db")
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t(v TEXT)")
    setup.commit()
    setup.close()
    emitted: list = []
    w = Writer(connect(path, synchronous="normal"), asyncio.get_running_loop(), emitted.extend,
               max_group=64, name="test-writer")
    w.start()
    w.emitted = emitted  # type: ignore[attr-defined]
    w.path = path  # type: ignore[attr-defined]
    yield w
    w.stop()
    w.join(timeout=10)


def stored(w) -> list[str]:
    conn = sqlite3.connect(w.path)
    try:
        return sorted(v for (v,) in conn.execute("SELECT v FROM t"))
    finally:
        conn.close()


async def in_one_group(w, calls):
    """Submit calls so the writer takes them as one group: it is held by a
    first call until all are queued."""
    gate = threading.Event()
    held = w.submit(lambda conn, changes: gate.wait(10))
    futs = [w.submit(fn, *args) for fn, args in calls]
    gate.set()
    await held
    return await asyncio.gather(*futs, return_exceptions=True)


async def test_a_lone_call_commits_and_a_lone_failure_leaves_nothing(writer):
    assert await writer.submit(put_rows, ["a", "b"]) == ["A", "B"]
    with pytest.raises(Conflict):
        await writer.submit(put_rows, ["c", "bad"])
    assert await writer.submit(put_one, "d") == ["D"]
    with pytest.raises(Conflict):
        await writer.submit(put_one, "bad")
    assert stored(writer) == ["a", "b", "d"]
    assert writer.emitted == ["a", "b", "d"]


async def test_merged_calls_where_one_fails_store_the_others(writer):
    results = await in_one_group(writer, [(put_rows, (["a"],)), (put_rows, (["b", "bad"],)),
                                          (put_rows, (["c", "d"],))])
    assert results[0] == ["A"] and results[2] == ["C", "D"]
    assert isinstance(results[1], Conflict)
    assert stored(writer) == ["a", "c", "d"]
    assert sorted(writer.emitted) == ["a", "c", "d"]


async def test_in_a_mixed_group_only_the_failing_operation_is_undone(writer):
    results = await in_one_group(writer, [(put_one, ("a",)), (put_rows, (["bad"],)),
                                          (put_one, ("bad",)), (put_rows, (["b"],))])
    assert results[0] == ["A"] and results[3] == ["B"]
    assert isinstance(results[1], Conflict) and isinstance(results[2], Conflict)
    assert stored(writer) == ["a", "b"]
