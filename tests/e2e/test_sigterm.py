"""SIGTERM drains: running tasks finish within the grace, pending ones stay
pending, the process exits 0; a task longer than the grace is handed back
(pending, attempts unchanged); a second SIGTERM exits at once."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import stored_tasks, write_config
from tests.helpers.daemon import Daemon, wait_until


def _enqueue_sleep(daemon: Daemon, seconds: float, name: str = "tqd.sleep") -> str:
    status, task = daemon.call("POST", "/v1/tasks", {"name": name, "payload": {"seconds": seconds}})
    assert status == 201, task
    return task["id"]


def _state(daemon: Daemon, task_id: str) -> str:
    return daemon.call("GET", f"/v1/tasks/{task_id}")[1]["state"]


def _start(tmp_path: Path, grace: float) -> tuple[Daemon, Path]:
    db = tmp_path / "tqd.db"
    config = write_config(tmp_path / "tqd.toml", concurrency=1, grace=grace)
    daemon = Daemon(f"sqlite://{db}", config=config, env={"E2E_LEDGER": str(tmp_path / "ledger")})
    return daemon.start(), db


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_lets_the_running_task_finish_and_leaves_pending_ones(
    tmp_path: Path, signum: signal.Signals
) -> None:
    daemon, db = _start(tmp_path, grace=20)
    try:
        running = _enqueue_sleep(daemon, 0.8)
        waiting = [_enqueue_sleep(daemon, 0.01) for _ in range(3)]  # concurrency 1: they wait
        wait_until(lambda: _state(daemon, running) == "processing", message="the first task runs")
        daemon.signal(signum)
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.stderr, daemon.stderr
    tasks = stored_tasks(db)
    assert (tasks[running].state, tasks[running].attempts) == ("completed", 1)
    for task_id in waiting:
        task = tasks[task_id]
        assert (task.state, task.attempts, task.errors, task.started_at) == ("pending", 0, [], None)


@pytest.mark.parametrize("name", ["tqd.sleep", "e2e.block"], ids=["async", "sync-in-a-thread"])
def test_a_task_longer_than_the_grace_is_handed_back(tmp_path: Path, name: str) -> None:
    daemon, db = _start(tmp_path, grace=0.5)
    try:
        long = _enqueue_sleep(daemon, 60, name)
        wait_until(lambda: _state(daemon, long) == "processing", message="the long task runs")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0  # after the grace, not after the 60 s task
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.stderr, daemon.stderr
    task = stored_tasks(db)[long]
    assert (task.state, task.attempts, task.errors) == ("pending", 0, [])
    assert task.lease_token is None and task.worker is None


def test_a_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    daemon, db = _start(tmp_path, grace=60)
    try:
        long = _enqueue_sleep(daemon, 120)
        wait_until(lambda: _state(daemon, long) == "processing", message="the long task runs")
        daemon.signal(signal.SIGTERM)
        # Draining: new tasks are refused while the running one has its grace.
        wait_until(lambda: daemon.call("GET", "/readyz")[0] == 503, message="draining")
        status, body = daemon.call("POST", "/v1/tasks", {"name": "tqd.noop"})
        assert status == 503 and body["error"]["code"] == "shutting_down"
        daemon.signal(signal.SIGTERM)
        status = daemon.wait(10)  # far sooner than the 60 s grace
    finally:
        daemon.kill()
    assert status != 0
    assert "second signal" in daemon.stderr
    # Exiting at once hands nothing back: the next start takes the lease back.
    assert stored_tasks(db)[long].state == "processing"
    again, _ = _start(tmp_path, grace=0.5)
    try:
        wait_until(lambda: _state(again, long) == "processing", message="the task runs again")
        task = again.call("GET", f"/v1/tasks/{long}")[1]
        assert task["attempts"] == 1 and task["error"]["kind"] == "lost"
    finally:
        again.kill()

