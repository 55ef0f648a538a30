"""The pool with the new handler kinds: a target that pushes back holds its
queue's dispatch; queues of remote tasks are never served locally."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.helpers.waiting import eventually
from tqd.clock import SystemClock
from tqd.config import Config, HttpHandler, RemoteHandler, TaskConfig
from tqd.runtime.catalog import Catalog, NewTask
from tqd.runtime.handlers import build_handlers
from tqd.runtime.pool import PoolSettings, WorkerPool
from tqd.storage.sqlite import SqliteStorage


class Harness:
    def __init__(self, storage: SqliteStorage, catalog: Catalog, pool: WorkerPool) -> None:
        self.storage, self.catalog, self.pool = storage, catalog, pool
        self.clock = SystemClock()

    async def enqueue(self, name: str, payload: bytes = b"null") -> str:
        task = self.catalog.build(NewTask(name=name, payload=payload), self.clock.now())
        await self.storage.enqueue([task])
        return task.id

    async def state(self, task_id: str) -> str:
        task = await self.storage.get(task_id)
        assert task is not None
        return task.state


@pytest.fixture
async def run_pool(tmp_path) -> AsyncIterator[Any]:
    started: list[Harness] = []

    async def start(tasks: dict[str, TaskConfig], concurrency: int = 4) -> Harness:
        config = Config(tasks=tasks, source="test")
        storage = SqliteStorage(str(tmp_path / "tqd.db"))
        await storage.open()
        catalog = Catalog(config)
        handlers = build_handlers(catalog, config)
        pool = WorkerPool(storage, catalog, handlers,
                          PoolSettings(worker_id="w1", concurrency=concurrency,
                                       exclude=catalog.remote_queues()), SystemClock())
        await pool.start()
        harness = Harness(storage, catalog, pool)
        harness.handlers = handlers  # type: ignore[attr-defined]
        started.append(harness)
        return harness

    yield start
    for h in started:
        await h.pool.stop(1.0)
        await h.handlers.close()  # type: ignore[attr-defined]
        await h.storage.close()


async def test_retry_after_holds_the_queue_and_schedules_the_task(aiohttp_server, run_pool):
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, float]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((request.path, loop.time()))
        if request.path == "/busy" and len([p for p, _ in seen if p == "/busy"]) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{name}", hook)
    server = await aiohttp_server(app)
    h = await run_pool({
        "busy": TaskConfig(handler=HttpHandler(url=str(server.make_url("/busy"))), queue="busy"),
        "calm": TaskConfig(handler=HttpHandler(url=str(server.make_url("/calm"))), queue="calm"),
    }, concurrency=1)

    before = h.clock.now()
    first = await h.enqueue("busy")
    await eventually(lambda: _is(h, first, "scheduled"))
    task = await h.storage.get(first)
    assert task.error["kind"] == "http_status"
    assert "Retry-After 1s" in task.error["message"]
    assert before + 1 <= task.run_at <= h.clock.now() + 1  # from Retry-After, not the backoff
    held_from = seen[0][1]

    # The busy queue is held; another queue is not.
    second = await h.enqueue("busy")
    calm = await h.enqueue("calm")
    await eventually(lambda: _is(h, calm, "completed"))
    await eventually(lambda: _is(h, second, "completed"))
    busy_times = [t for p, t in seen if p == "/busy"]
    calm_times = [t for p, t in seen if p == "/calm"]
    assert len(busy_times) == 2
    assert busy_times[1] - held_from >= 0.95  # nothing went to the busy target during the hold
    assert calm_times[0] - held_from < busy_times[1] - held_from


async def _is(h: Harness, task_id: str, state: str) -> bool:
    return await h.state(task_id) == state


async def test_the_retry_is_scheduled_for_the_retry_after(aiohttp_server, run_pool):
    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "120"})

    app = web.Application()
    app.router.add_post("/", hook)
    server = await aiohttp_server(app)
    h = await run_pool({"hook": TaskConfig(handler=HttpHandler(url=str(server.make_url("/"))),
                                           queue="hooks")})
    before = h.clock.now()
    task_id = await h.enqueue("hook")
    await eventually(lambda: _is(h, task_id, "scheduled"))
    task = await h.storage.get(task_id)
    assert before + 120 <= task.run_at <= h.clock.now() + 120
    assert task.attempts == 1


async def test_remote_queues_are_not_served_by_the_local_pool(run_pool):
    h = await run_pool({
        "gpu": TaskConfig(handler=RemoteHandler(), queue="gpu"),
    })
    assert h.catalog.remote_queues() == {"gpu"}
    assert not h.pool.serves("gpu")
    remote = await h.enqueue("gpu")
    local = await h.enqueue("tqd.noop")
    await eventually(lambda: _is(h, local, "completed"))
    assert await h.state(remote) == "pending"
    assert h.pool.running == {}
