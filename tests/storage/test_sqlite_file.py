"""The SQLite backend on a real file: durability across processes' lifetimes
and the lock that keeps a second tqd off a file in use."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from tqd.clock import FakeClock
from tqd.errors import ConfigError
from tqd.storage.sqlite import SqliteStorage

from .helpers import TaskMaker, counts


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
