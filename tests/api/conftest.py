"""The API under test: create_app() with a Services object on a real SQLite
store, served by pytest-aiohttp's test server. No worker pool runs: tests
move tasks through their life with the store's own operations, so every
state is reached exactly when the test wants it.

``start_tqd``/``tqd``/``http`` instead start a whole tqd in this process (the
Daemon: pool, roles, API on a free port), for the tests of live behaviour:
metrics that move as tasks run, the event stream, statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from tqd.api.app import Services, create_app
from tqd.clock import SystemClock
from tqd.config import load_config
from tqd.daemon import Daemon
from tqd.models import Outcome, Task, make_error
from tqd.runtime.catalog import Catalog
from tqd.storage.sqlite import SqliteStorage


class Api:
    """A test client on the app, and the store and services behind it."""

    def __init__(self, client: TestClient, svc: Services) -> None:
        self.client = client
        self.svc = svc
        self.store: SqliteStorage = svc.storage  # type: ignore[assignment]

    async def call(self, method: str, path: str, body: Any = None, *,
                   raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One request; returns (status, decoded JSON body or None)."""
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        async with self.client.request(method, path, data=data, headers=hdrs) as resp:
            text = await resp.read()
            return resp.status, orjson.loads(text) if text else None

    async def enqueue(self, name: str = "tqd.noop", **fields: Any) -> dict:
        status, body = await self.call("POST", "/v1/tasks", {"name": name, **fields})
        assert status == 201, body
        return body

    async def lease(self, queue: str = "default", limit: int = 1000) -> list[Task]:
        return await self.store.lease(queue, limit, "w-test", self.svc.clock.now())

    async def finish(self, task: Task, how: str = "complete", result: Any = "ok") -> None:
        """Settle a leased task: completed, or failed without retry."""
        now = self.svc.clock.now()
        if how == "complete":
            outcome = Outcome(task_id=task.id, token=task.lease_token, kind="complete",
                              result=orjson.dumps(result))
        else:
            outcome = Outcome(task_id=task.id, token=task.lease_token, kind="fail",
                              error=make_error("exception", "boom", task.attempt, now))
        assert await self.store.settle([outcome], now) == [True]

    async def in_state(self, state: str, queue: str = "default", **fields: Any) -> dict:
        """A new task of tqd.noop brought to ``state`` through the store."""
        if state == "scheduled":
            return await self.enqueue(queue=queue, delay=3600, **fields)
        task = await self.enqueue(queue=queue, **fields)
        if state == "pending":
            return task
        if state == "cancelled":
            await self.store.cancel(task["id"], self.svc.clock.now())
        else:
            leased_now = await self.lease(queue)
            (leased,) = [t for t in leased_now if t.id == task["id"]]
            others = [Outcome(task_id=t.id, token=t.lease_token, kind="release")
                      for t in leased_now if t is not leased]
            await self.store.settle(others, self.svc.clock.now())  # theirs is not to change
            if state == "completed":
                await self.finish(leased)
            elif state == "failed":
                await self.finish(leased, "fail")
        _, body = await self.call("GET", f"/v1/tasks/{task['id']}")
        assert body["state"] == state
        return body


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[MakeApi]:
    """Builds an Api; keyword arguments are config overrides (as flags would be)."""
    stores: list[SqliteStorage] = []

    async def build(**overrides: Any) -> Api:
        config = load_config(
            None, env={}, overrides={"storage": f"sqlite://{tmp_path / 'tqd.db'}", **overrides}
        )
        store = SqliteStorage(str(tmp_path / "tqd.db"))
        await store.open()
        stores.append(store)
        catalog = Catalog(config)
        await store.declare_queues(sorted(set(config.queues) | catalog.queues()))
        svc = Services(storage=store, catalog=catalog, config=config, clock=SystemClock())
        client = await aiohttp_client(create_app(svc))
        return Api(client, svc)

    yield build
    for store in stores:
        await store.close()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """The API with the default configuration."""
    return await make_api()


@pytest.fixture
async def start_tqd(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """``await start_tqd(**settings)``: a started Daemon; settings are tqd.toml
    keys (``events={"buffer": 5}``). Stopped after the test."""
    started: list[Daemon] = []

    async def start(**settings: Any) -> Daemon:
        overrides = {"listen": "127.0.0.1:0", "storage": f"sqlite://{tmp_path}/tqd.db",
                     "shutdown_grace": 2.0, **settings}
        daemon = Daemon(load_config(None, env={}, overrides=overrides))
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        await daemon.stop()


@pytest.fixture
async def tqd(start_tqd) -> Daemon:
    """A tqd with the default settings."""
    return await start_tqd()


@pytest.fixture
async def http(tqd) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose relative URLs go to ``tqd``."""
    async with aiohttp.ClientSession(base_url=tqd.url) as session:
        yield session
