"""The API as the Daemon class composes it, in this process: config queues
declared, tasks run by the pool, the process registered, and a drain."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import aiohttp

from tests.helpers.aio import until
from tqd.config import load_config
from tqd.daemon import Daemon


async def test_daemon_serves_the_api_with_a_working_pool(tmp_path: Path) -> None:
    config = load_config(None, env={}, overrides={
        "listen": "127.0.0.1:0",
        "storage": f"sqlite://{tmp_path / 'tqd.db'}",
        "queues": {"images": {"concurrency": 2}},
        "tasks": {"mail": {"handler": "builtin:echo", "queue": "mail"}},
    })
    daemon = Daemon(config)
    url = await daemon.start()
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        async with aiohttp.ClientSession(url) as http:
            async with http.get("/v1/queues") as resp:
                names = [q["name"] for q in (await resp.json())["queues"]]
            assert names == ["default", "images", "mail"]

            async with http.post("/v1/tasks", json={"name": "mail", "payload": {"to": "a@b"}}) as resp:
                assert resp.status == 201
                task = await resp.json()
            async with http.get(f"/v1/tasks/{task['id']}?wait=10") as resp:
                done = await resp.json()
            assert done["state"] == "completed" and done["result"] == {"to": "a@b"}
            assert done["started_at"] and done["finished_at"] and done["attempts"] == 1

            async with http.get("/v1/workers") as resp:
                workers = (await resp.json())["workers"]
            assert [w["id"] for w in workers] == [daemon.worker_id]

            daemon.services.draining = True
            async with http.post("/v1/tasks", json={"name": "tqd.noop"}) as resp:
                assert resp.status == 503
            async with http.get("/readyz") as resp:
                assert resp.status == 503
    finally:
        await daemon.stop()


async def test_daemon_runs_the_whole_life_cycle(tmp_path: Path) -> None:
    """Through the API of a running daemon: a delayed task runs after its
    delay, a failing one is retried and ends in the dead letters, a
    processing one is cancelled and its handler stops."""
    config = load_config(None, env={}, overrides={
        "listen": "127.0.0.1:0",
        "storage": f"sqlite://{tmp_path / 'tqd.db'}",
        "defaults": {"backoff_base": 0.01, "backoff_max": 0.01},
    })
    daemon = Daemon(config)
    url = await daemon.start()
    try:
        async with aiohttp.ClientSession(url) as http:

            async def enqueue(body: dict) -> dict:
                async with http.post("/v1/tasks", json=body) as resp:
                    assert resp.status == 201
                    return await resp.json()

            async def get(task_id: str, wait: float = 0) -> dict:
                async with http.get(f"/v1/tasks/{task_id}?wait={wait}") as resp:
                    return await resp.json()

            delayed = await enqueue({"name": "tqd.noop", "delay": 0.3})
            failing = await enqueue({"name": "tqd.fail", "payload": {"message": "again"},
                                     "max_attempts": 3})
            sleeper = await enqueue({"name": "tqd.sleep", "payload": {"seconds": 60}})

            done = await get(delayed["id"], wait=10)
            assert done["state"] == "completed"
            waited = datetime.fromisoformat(done["started_at"]) - datetime.fromisoformat(done["created_at"])
            assert waited.total_seconds() >= 0.3

            dead = await get(failing["id"], wait=10)
            assert dead["state"] == "failed" and dead["attempts"] == 3
            assert [e["attempt"] for e in dead["errors"]] == [1, 2, 3]

            assert (await get(sleeper["id"]))["state"] == "processing"
            async with http.post(f"/v1/tasks/{sleeper['id']}/cancel") as resp:
                assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
            pool = daemon.pool
            assert pool is not None
            await until(lambda: not pool.running, message="the cancelled task's handler stopped")
            assert (await get(sleeper["id"]))["state"] == "cancelled"
    finally:
        await daemon.stop()


async def test_a_long_poll_does_not_hold_the_stop(tmp_path: Path) -> None:
    """A client waiting on ?wait=60 for a task that will not end gets its
    answer (the task as it is) when the drain ends, and the stop does not
    wait for the 60 s; a ?wait= that arrives later answers at once."""
    config = load_config(None, env={}, overrides={
        "listen": "127.0.0.1:0", "storage": f"sqlite://{tmp_path / 'tqd.db'}", "shutdown_grace": 0.5,
    })
    daemon = Daemon(config)
    url = await daemon.start()
    async with aiohttp.ClientSession(url) as http:
        async with http.post("/v1/tasks", json={"name": "tqd.noop", "delay": 3600}) as resp:
            task = await resp.json()

        async def long_poll() -> tuple[int, dict]:
            async with http.get(f"/v1/tasks/{task['id']}?wait=60") as resp:
                return resp.status, await resp.json()

        poll = asyncio.create_task(long_poll())
        waiters = daemon.services.waiters
        await until(lambda: waiters._by_id, message="the poll waits")
        await asyncio.wait_for(daemon.stop(), 15)  # long before the 60 s would end
        status, body = await asyncio.wait_for(poll, 5)
    assert status == 200 and body["state"] == "scheduled"
    assert waiters.watch(task["id"]).done()  # a later watch does not wait
