"""RemoteWorker against a real daemon: functions, failures, heartbeats,
lost leases and a graceful stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.helpers.daemon import Daemon
from tqd.client import AsyncClient, RemoteTask, RemoteWorker, TaskFailed

CONFIG = """
[roles]
supervisor_interval = 0.2
scheduler_interval = 0.2

[defaults]
backoff_base = 0.05
backoff_max = 0.1
"""
NAMES = ("double", "shout", "broken", "flaky", "slow", "forever", "orphan")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("worker")
    config = tmp / "tqd.toml"
    tasks = "".join(f'[tasks.{n}]\nhandler = {{kind = "remote"}}\nqueue = "work"\n' for n in NAMES)
    config.write_text(CONFIG + tasks)
    with Daemon(f"sqlite://{tmp}/tqd.db", config=config) as d:
        yield d


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(daemon.url) as c:
        yield c


class Functions:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.thread_names: list[str] = []

    async def double(self, payload: Any, task: RemoteTask) -> Any:
        return {"n": payload["n"] * 2, "attempt": task.attempt, "name": task.name}

    def shout(self, payload: Any, task: RemoteTask) -> Any:
        import threading

        self.thread_names.append(threading.current_thread().name)
        return payload.upper()

    async def broken(self, payload: Any, task: RemoteTask) -> Any:
        raise TaskFailed("cannot do this", retry=False)

    async def flaky(self, payload: Any, task: RemoteTask) -> Any:
        if task.attempt < 2:
            raise ValueError("first time unlucky")
        return "second time lucky"

    async def slow(self, payload: Any, task: RemoteTask) -> Any:
        await asyncio.sleep(payload)
        return "slept"

    async def forever(self, payload: Any, task: RemoteTask) -> Any:
        self.started.set()
        try:
            await asyncio.sleep(300)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def worker(daemon: Daemon, fns: Functions, **options: Any) -> RemoteWorker:
    functions = {n: getattr(fns, n) for n in NAMES if hasattr(fns, n)}
    options.setdefault("poll_wait", 2.0)
    return RemoteWorker("work", functions, url=daemon.url, **options)


async def test_functions_run_and_report(daemon: Daemon, client: AsyncClient):
    fns = Functions()
    w = worker(daemon, fns, concurrency=4)
    running = asyncio.create_task(w.run())
    try:
        a = await client.enqueue("double", {"n": 21})
        b = await client.enqueue("shout", "hello")
        c = await client.enqueue("broken")
        d = await client.enqueue("flaky")
        e = await client.enqueue("orphan")
        done = {t["id"]: await client.wait(t["id"], timeout=20) for t in (a, b, c, d, e)}
    finally:
        w.stop()
        await asyncio.wait_for(running, 20)
    assert done[a["id"]]["result"] == {"n": 42, "attempt": 1, "name": "double"}
    assert done[b["id"]]["result"] == "HELLO"
    assert fns.thread_names and fns.thread_names[0].startswith("tqd-worker")
    assert done[c["id"]]["state"] == "failed"
    assert done[c["id"]]["attempts"] == 1
    assert done[c["id"]]["error"]["message"] == "cannot do this"
    assert done[d["id"]]["state"] == "completed"
    assert done[d["id"]]["result"] == "second time lucky"
    assert done[d["id"]]["errors"][0]["message"] == "ValueError: first time unlucky"
    # A name the worker has no function for fails and retries until its attempts end.
    assert done[e["id"]]["state"] == "failed"
    assert "no function for task 'orphan'" in done[e["id"]]["error"]["message"]
    assert w.counts["completed"] == 3  # double, shout, flaky


async def test_heartbeats_keep_a_lease_longer_than_its_timeout(daemon: Daemon, client: AsyncClient):
    w = worker(daemon, Functions(), visibility_timeout=0.6)
    running = asyncio.create_task(w.run())
    try:
        task = await client.enqueue("slow", 2.0)
        done = await client.wait(task["id"], timeout=20)
    finally:
        w.stop()
        await asyncio.wait_for(running, 20)
    assert done["state"] == "completed"
    assert done["result"] == "slept"
    assert done["attempts"] == 1
    assert done["errors"] == []  # never reclaimed although it ran past 0.6 s


async def test_a_cancelled_task_stops_its_function(daemon: Daemon, client: AsyncClient):
    fns = Functions()
    w = worker(daemon, fns, visibility_timeout=0.6)
    running = asyncio.create_task(w.run())
    try:
        task = await client.enqueue("forever")
        await asyncio.wait_for(fns.started.wait(), 20)
        await client.cancel(task["id"])
        await asyncio.wait_for(fns.cancelled.wait(), 20)  # the next heartbeat learns of it
    finally:
        w.stop()
        await asyncio.wait_for(running, 20)
    assert w.counts["lost"] == 1
    assert (await client.get(task["id"]))["state"] == "cancelled"


async def test_stop_hands_back_what_did_not_finish(daemon: Daemon, client: AsyncClient):
    fns = Functions()
    w = worker(daemon, fns, stop_grace=0.2)
    running = asyncio.create_task(w.run())
    task = await client.enqueue("forever")
    await asyncio.wait_for(fns.started.wait(), 20)
    started = time.monotonic()
    w.stop()
    await asyncio.wait_for(running, 20)
    assert time.monotonic() - started < 10
    assert fns.cancelled.is_set()
    assert w.counts["released"] == 1
    back = await client.get(task["id"])
    assert (back["state"], back["attempts"]) == ("pending", 0)
    # Clean up for the other tests of this module.
    await client.cancel(task["id"])
