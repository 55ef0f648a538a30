"""A redis-server with appendonly (fsync always) restarts in the middle of a run."""

from __future__ import annotations

import time
from pathlib import Path

from tests.helpers.daemon import wait_until
from tests.helpers.redis_server import start_server

from .test_shared_redis import counts

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


def test_no_acknowledged_task_is_lost_and_work_resumes_by_itself(tmp_path: Path, daemons):
    (tmp_path / "redis").mkdir()
    server = start_server(tmp_path / "redis", DURABLE)
    try:
        # a takes requests only; b works. After the restart nothing new is
        # enqueued until the backlog is done: b must lease again by itself.
        a = daemons(server.url, "tqd", "a", worker=False)
        b = daemons(server.url, "tqd", "b", concurrency=5, visibility_timeout=30.0)
        acked: list[str] = []
        for _ in range(300):
            status, task = a.call("POST", "/v1/tasks", {"name": "tqd.sleep",
                                                         "payload": {"seconds": 0.02}})
            assert status == 201, task
            acked.append(task["id"])
        wait_until(lambda: counts(a)["completed"] >= 30, timeout=30, message="30 done")

        server.stop()  # SIGKILL: no chance to write anything more
        started = time.monotonic()
        status, body = a.call("POST", "/v1/tasks", {"name": "tqd.noop"})
        assert status == 503 and body["error"]["code"] == "storage_unavailable"
        assert time.monotonic() - started < 3.0, "the enqueue hung instead of refusing"
        assert a.call("GET", "/readyz")[0] == 503
        assert b.call("GET", "/readyz")[0] == 503
        time.sleep(0.5)  # an outage long enough for every loop to notice it
        server.start()  # same port, same directory: the AOF is read back

        wait_until(lambda: a.call("GET", "/readyz")[0] == 200, timeout=20, message="ready")
        wait_until(lambda: counts(a)["completed"] == 300, timeout=60, interval=0.1,
                   message="every acknowledged task completed")
        final = counts(a)
        assert final["pending"] == final["processing"] == final["failed"] == 0
        for task_id in acked[::37]:
            status, task = a.call("GET", f"/v1/tasks/{task_id}")
            assert status == 200 and task["state"] == "completed"
        # and the store takes and runs new work
        status, task = a.call("POST", "/v1/tasks", {"name": "tqd.noop"})
        assert status == 201
        status, task = a.call("GET", f"/v1/tasks/{task['id']}?wait=10")
        assert task["state"] == "completed"
        assert "subscription restored" in b.stderr
        # the outage is a few lines in the log, not a traceback per request
        for d in (a, b):
            assert "Traceback" not in d.stderr, d.stderr
        refused = [ln for ln in a.stderr.splitlines() if "answered 503" in ln]
        assert len(refused) == 1 and " WARNING " in refused[0], refused
    finally:
        server.stop()
