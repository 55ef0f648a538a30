"""Two ``tqd serve`` processes on one real Redis act as one queue."""

from __future__ import annotations

import statistics
import time

from tests.helpers.daemon import Daemon, wait_until

SHORT = {"name": "tqd.sleep", "payload": {"seconds": 0.03}}


def counts(d: Daemon, queue: str = "default") -> dict[str, int]:
    status, body = d.call("GET", f"/v1/queues/{queue}")
    assert status == 200, body
    return body["counts"]


def worker_ids(d: Daemon) -> set[str]:
    status, body = d.call("GET", "/v1/workers")
    assert status == 200, body
    return {w["id"] for w in body["workers"]}


def all_tasks(d: Daemon, state: str) -> list[dict]:
    out, cursor = [], None
    while True:
        path = f"/v1/tasks?state={state}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, page = d.call("GET", path)
        assert status == 200, page
        out += page["tasks"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_every_process_is_listed_by_every_process(redis_server, redis_prefix, daemons):
    a = daemons(redis_server.url, redis_prefix, "a", worker=False)
    b = daemons(redis_server.url, redis_prefix, "b", concurrency=7)
    both = wait_until(lambda: len(worker_ids(a)) == 2 and worker_ids(a), message="two workers")
    assert worker_ids(b) == both
    _, body = b.call("GET", "/v1/workers")
    by_pid = {w["pid"]: w for w in body["workers"]}
    assert set(by_pid) == {a.pid, b.pid}
    assert by_pid[a.pid]["concurrency"] == 0  # API only: registered, runs nothing
    assert by_pid[b.pid]["concurrency"] == 7
    # a process that stops cleanly unregisters at once
    assert a.stop() == 0
    wait_until(lambda: worker_ids(b) == {by_pid[b.pid]["id"]}, message="a unregistered")


def test_a_sigkilled_process_leaves_no_task_behind(redis_server, redis_prefix, daemons):
    a = daemons(redis_server.url, redis_prefix, "a", concurrency=25)
    b = daemons(redis_server.url, redis_prefix, "b", concurrency=25)
    wait_until(lambda: len(worker_ids(b)) == 2, message="both registered")
    _, body = a.call("GET", "/v1/workers")
    a_id = next(w["id"] for w in body["workers"] if w["pid"] == a.pid)
    # 2,000 short tasks, half enqueued through each process
    for i in range(40):
        status, body = (a if i % 2 else b).call("POST", "/v1/tasks/batch", {"tasks": [SHORT] * 50})
        assert status == 201, body
    # kill a mid-run, while it holds leases
    wait_until(lambda: counts(b)["completed"] >= 300, timeout=60, message="300 done")
    a.kill()
    left = counts(b)
    assert left["completed"] < 2000, "the run ended before the kill; nothing was tested"
    # b finishes everything, a's leased tasks included once their leases ran out
    wait_until(lambda: counts(b)["completed"] == 2000, timeout=120, interval=0.1,
               message="all 2,000 completed")
    final = counts(b)
    assert final["failed"] == final["pending"] == final["processing"] == 0
    reclaimed = [t for t in all_tasks(b, "completed") if t["errors"]]
    assert reclaimed, "a held no lease when killed"
    for t in reclaimed:
        assert [e["kind"] for e in t["errors"]] == ["lost"]
        assert a_id in t["errors"][0]["message"]
    # the dead process drops out of the registry once its registration expires
    wait_until(lambda: a_id not in worker_ids(b), timeout=20, message="a expired")


def test_a_task_enqueued_through_an_api_only_process_starts_on_an_idle_one(
    redis_server, redis_prefix, daemons
):
    a = daemons(redis_server.url, redis_prefix, "a", worker=False)
    b = daemons(redis_server.url, redis_prefix, "b")
    _, body = b.call("GET", "/v1/workers")
    b_id = next(w["id"] for w in body["workers"] if w["pid"] == b.pid)
    latencies = []
    for _ in range(30):
        sent = time.time()
        status, task = a.call("POST", "/v1/tasks", {"name": "tqd.noop"})
        assert status == 201
        status, task = a.call("GET", f"/v1/tasks/{task['id']}?wait=10")
        assert task["state"] == "completed" and task["worker"] == b_id
        started = _epoch(task["started_at"])
        latencies.append((started - sent) * 1000)
        time.sleep(0.05)  # b is idle again before the next one
    # reported, not asserted (speed is a benchmark): run with -s to see it
    print(f"\nwake-up latency enqueue(A) -> started(B) over {len(latencies)} tasks: "
          f"median {statistics.median(latencies):.2f} ms, max {max(latencies):.2f} ms")


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
