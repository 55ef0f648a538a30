"""The storage conformance suite's fixtures: one ``storage`` per backend.

Every test in ``tests/storage/`` that asks for ``storage`` (or
``new_storage``) runs once per entry of :data:`BACKENDS`. To put another
backend under the suite, add one line there: a name and a factory.

A factory takes the pytest ``request`` (so it can pull other fixtures such
as ``tmp_path`` or a session-wide server, and register finalizers) and
returns a callable that makes a new, unopened Storage on one fresh store.
Calling that callable again must give another handle on the *same* store:
the reopen and second-handle tests rely on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401
from tqd.clock import FakeClock
from tqd.models import Change, QueueChange
from tqd.storage.base import Storage
from tqd.storage.redis import RedisStorage
from tqd.storage.sqlite import SqliteStorage

from .helpers import TaskMaker

StorageMaker = Callable[[], Storage]


def _sqlite(request: pytest.FixtureRequest) -> StorageMaker:
    path = str(request.getfixturevalue("tmp_path") / "tqd.db")
    return lambda: SqliteStorage(path)


def _fakeredis(request: pytest.FixtureRequest) -> StorageMaker:
    import fakeredis

    # One fake server per test; every handle gets its own client on it, as
    # processes get their own connections to one Redis.
    server = fakeredis.FakeServer()
    return lambda: RedisStorage(
        "redis://fakeredis", client=fakeredis.FakeAsyncRedis(server=server)
    )


def _redis(request: pytest.FixtureRequest) -> StorageMaker:
    # The session's redis-server; a fresh key prefix stands for a fresh store.
    url = request.getfixturevalue("redis_server").url
    prefix = request.getfixturevalue("redis_prefix")
    return lambda: RedisStorage(url, prefix=prefix)


#: Backends under test, by the name shown in test ids.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], StorageMaker]] = {
    "sqlite": _sqlite,
    "fakeredis": _fakeredis,
    "redis": _redis,
}


@pytest.fixture(params=list(BACKENDS))
def new_storage(request: pytest.FixtureRequest) -> StorageMaker:
    """Makes unopened Storage handles, all on one fresh store of one backend."""
    return BACKENDS[request.param](request)


@pytest.fixture
async def storage(new_storage: StorageMaker) -> AsyncIterator[Storage]:
    """An opened Storage on a fresh, empty store; closed after the test."""
    s = new_storage()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def clock() -> FakeClock:
    """The time every test passes as ``now``; it moves only when told to."""
    return FakeClock()


@pytest.fixture
def make(clock: FakeClock) -> TaskMaker:
    """Builds complete tasks, as the API would, created at the clock's now."""
    return TaskMaker(clock)


@pytest.fixture
def events(storage: Storage) -> list[Any]:
    """Every Change and QueueChange the storage emits, in order.

    ``Change.op`` is blanked so tests compare what changed; test_change_ops.py
    checks which operation each change names.
    """
    seen: list[Change | QueueChange] = []

    def on(batch: Any) -> None:
        seen.extend(c._replace(op="") if type(c) is Change else c for c in batch)

    storage.add_listener(on)
    return seen
