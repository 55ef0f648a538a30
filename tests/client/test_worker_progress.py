"""Progress from remote workers, against a real daemon: RemoteTask.progress
from async and threaded functions, the raw POST /v1/tasks/{id}/progress, a
stale token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.helpers.daemon import Daemon
from tqd.client import AsyncClient, RemoteTask, RemoteWorker
from tqd.client.errors import ApiError

NAMES = ("steps", "steps_sync", "hold")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("progress")
    config = tmp / "tqd.toml"
    config.write_text("[roles]\nprogress_interval = 0.2\n" + "".join(
        f'[tasks.{n}]\nhandler = {{kind = "remote"}}\nqueue = "work"\n' for n in NAMES))
    with Daemon(f"sqlite://{tmp}/tqd.db", config=config) as d:
        yield d


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(daemon.url) as c:
        yield c


class Functions:
    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def steps(self, payload: Any, task: RemoteTask) -> Any:
        for i in range(1, 1001):
            task.progress(i / 1000, f"step {i}")
            if i % 50 == 0:
                await asyncio.sleep(0)
        return "ok"

    def steps_sync(self, payload: Any, task: RemoteTask) -> Any:
        for i in range(1, 1001):
            task.progress(i / 1000, f"step {i}")
        return "ok"

    async def hold(self, payload: Any, task: RemoteTask) -> Any:
        task.progress(0.3, "waiting")
        self.holding.set()
        await self.release.wait()
        return "released"


@pytest.mark.parametrize("name", ["steps", "steps_sync"])
async def test_the_last_report_of_a_chatty_function_is_shown(daemon, client, name):
    w = RemoteWorker("work", {n: getattr(Functions(), n) for n in NAMES}, url=daemon.url,
                     poll_wait=2.0)
    running = asyncio.create_task(w.run())
    try:
        task = await client.enqueue(name)
        done = await client.wait(task["id"], timeout=20)
    finally:
        w.stop()
        await asyncio.wait_for(running, 20)
    assert done["state"] == "completed"
    assert done["progress"]["fraction"] == 1.0
    assert done["progress"]["message"] == "step 1000"


async def test_progress_shows_while_the_task_runs(daemon, client):
    fns = Functions()
    w = RemoteWorker("work", {n: getattr(fns, n) for n in NAMES}, url=daemon.url, poll_wait=2.0)
    running = asyncio.create_task(w.run())
    try:
        task = await client.enqueue("hold")
        await asyncio.wait_for(fns.holding.wait(), 20)
        for _ in range(200):
            shown = await client.get(task["id"])
            if shown["progress"] is not None:
                break
            await asyncio.sleep(0.05)
        assert shown["state"] == "processing"
        assert (shown["progress"]["fraction"], shown["progress"]["message"]) == (0.3, "waiting")
        fns.release.set()
        await client.wait(task["id"], timeout=20)
    finally:
        fns.release.set()
        w.stop()
        await asyncio.wait_for(running, 20)


async def test_raw_progress_and_a_stale_token(daemon, client):
    task = await client.enqueue("hold")
    [leased] = await client.lease("work", 1, wait=5)
    assert leased["id"] == task["id"]
    token = leased["lease"]["token"]
    answer = await client.progress(task["id"], token, 0.5, "half")
    assert answer == {"id": task["id"], "progress": {"fraction": 0.5, "message": "half"}}
    with pytest.raises(ApiError) as err:
        await client.progress(task["id"], "x" + token, 0.6)
    assert (err.value.status, err.value.code) == (409, "stale_lease")
    await client.complete(task["id"], token, "done")
    with pytest.raises(ApiError) as err:
        await client.progress(task["id"], token, 0.7)
    assert err.value.status == 409
    assert (await client.get(task["id"]))["progress"]["message"] == "half"
