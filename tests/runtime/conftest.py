"""Fixtures of the runtime tests: a real SQLite store and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.storage.helpers import TaskMaker
from tqd.clock import FakeClock
from tqd.storage.sqlite import SqliteStorage


@pytest.fixture
def clock() -> FakeClock:
    """Time for the roles; it moves only when a test says so."""
    return FakeClock()


@pytest.fixture
def make(clock: FakeClock) -> TaskMaker:
    """Builds complete tasks created at the clock's now."""
    return TaskMaker(clock)


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SqliteStorage]:
    """An opened SQLite store in a fresh file; closed after the test."""
    s = SqliteStorage(str(tmp_path / "tqd.db"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def other(store: SqliteStorage) -> AsyncIterator[SqliteStorage]:
    """A second handle on the same file, standing for another process: the
    changes it makes are not announced to the listeners of ``store``."""
    s = SqliteStorage(store.path, exclusive=False)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
