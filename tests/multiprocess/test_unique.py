"""Unique tasks under 50 concurrent enqueues through the HTTP API: exactly one
task is created, on SQLite (one process) and on a real Redis shared by two
``tqd serve`` processes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers.daemon import Daemon

UNIQUE = '[tasks.sync]\nhandler = "builtin:sleep"\nunique_for = 300\n'


def burst(daemons: list[Daemon], n: int = 50) -> list[tuple[int, dict]]:
    """``n`` enqueues of one unique task at once, spread over ``daemons``."""
    gate = threading.Barrier(n)

    def one(i: int) -> tuple[int, dict]:
        gate.wait()
        return daemons[i % len(daemons)].call(
            "POST", "/v1/tasks", {"name": "sync", "payload": {"account": 7, "seconds": 2}}
        )

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def check_one_created(answers: list[tuple[int, dict]]) -> str:
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 49 + [201], statuses
    ids = {body["id"] for _, body in answers}
    assert len(ids) == 1, ids
    return ids.pop()


def test_fifty_concurrent_enqueues_on_sqlite(tmp_path: Path):
    cfg = tmp_path / "tqd.toml"
    cfg.write_text(UNIQUE)
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=cfg) as d:
        task_id = check_one_created(burst([d]))
        _, queue = d.call("GET", "/v1/queues/default")
        assert sum(queue["counts"].values()) == 1
        _, task = d.call("GET", f"/v1/tasks/{task_id}")
        assert task["unique_key"].startswith("sha256:")


def test_fifty_concurrent_enqueues_over_two_processes_on_redis(
    redis_server, redis_prefix, tmp_path: Path
):
    cfg = tmp_path / "tqd.toml"
    cfg.write_text(f'[redis]\nprefix = "{redis_prefix}"\n' + UNIQUE)
    with Daemon(redis_server.url, config=cfg) as a, Daemon(redis_server.url, config=cfg) as b:
        task_id = check_one_created(burst([a, b]))
        for d in (a, b):
            _, queue = d.call("GET", "/v1/queues/default")
            assert sum(queue["counts"].values()) == 1
        # Once it ends, the key is free again: a new enqueue creates a task.
        _, done = a.call("GET", f"/v1/tasks/{task_id}?wait=20")
        assert done["state"] == "completed"
        status, fresh = b.call("POST", "/v1/tasks", {"name": "sync", "payload": {"account": 7, "seconds": 2}})
        assert status == 201 and fresh["id"] != task_id
