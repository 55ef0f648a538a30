"""The API as the Daemon class composes it, in this process: config queues
declared, tasks run by the pool, the process registered, and a drain."""

from __future__ import annotations

from pathlib import Path

import aiohttp

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
