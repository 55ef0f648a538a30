"""kill -9 in the middle of 2,000 tasks loses none of them.

`tqd serve` runs on SQLite with a python handler that sleeps a few ms and
appends its task id to a ledger file outside tqd. The daemon is SIGKILLed
while the tasks run and started again on the same file: every acknowledged
task must reach ``completed``. A task whose handler finished but whose
outcome was not committed before the kill runs twice (at-least-once); such
duplicates can only be tasks that were in flight at the kill, which the
restart reports with a ``lost`` error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.e2e.conftest import stored_tasks, write_config
from tests.helpers.daemon import Daemon, wait_until

TASKS = 2000
BATCH = 200
CONCURRENCY = 20


def _ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_sigkill_loses_no_task(tmp_path: Path) -> None:
    db = tmp_path / "tqd.db"
    ledger = tmp_path / "ledger.txt"
    config = write_config(tmp_path / "tqd.toml", concurrency=CONCURRENCY)
    env = {"E2E_LEDGER": str(ledger)}

    first = Daemon(f"sqlite://{db}", config=config, env=env).start()
    try:
        # Enqueue everything while the queue is paused, so the kill surely
        # comes while the tasks run (each takes >= 5 ms, 20 at a time).
        status, _ = first.call("POST", "/v1/queues/e2e/pause")
        assert status == 200
        acknowledged: list[str] = []
        for start in range(0, TASKS, BATCH):
            items = [{"name": "e2e.ledger", "payload": {"ms": 5, "n": n}}
                     for n in range(start, start + BATCH)]
            status, body = first.call("POST", "/v1/tasks/batch", {"tasks": items})
            assert status == 201, body
            acknowledged += [t["id"] for t in body["tasks"]]
        assert len(set(acknowledged)) == TASKS
        status, _ = first.call("POST", "/v1/queues/e2e/resume")
        assert status == 200
        wait_until(lambda: len(_ledger(ledger)) >= 300, timeout=30, interval=0.005,
                   message="300 runs in the ledger")
    finally:
        first.kill()  # SIGKILL
    at_kill = len(set(_ledger(ledger)))
    assert at_kill < TASKS, "every task had finished before the kill; the test proved nothing"

    second = Daemon(f"sqlite://{db}", config=config, env=env)
    with second.start():

        def all_completed() -> bool:
            status, queue = second.call("GET", "/v1/queues/e2e")
            return status == 200 and queue["counts"]["completed"] == TASKS

        wait_until(all_completed, timeout=60, interval=0.05, message="every task completed")
        assert second.stop() == 0

    tasks = stored_tasks(db)
    assert set(tasks) == set(acknowledged), "a task was lost or appeared from nowhere"
    assert {t.state for t in tasks.values()} == {"completed"}
    runs = Counter(_ledger(ledger))
    assert set(runs) == set(acknowledged), "a completed task never ran its handler"
    duplicates = {task_id for task_id, n in runs.items() if n > 1}
    in_flight = {t.id for t in tasks.values() if any(e["kind"] == "lost" for e in t.errors)}
    print(
        f"\nkill -9 after {at_kill} of {TASKS} runs: {len(in_flight)} tasks in flight at the kill, "
        f"{len(duplicates)} ran twice ({sum(runs.values()) - TASKS} extra runs)"
    )
    assert duplicates <= in_flight, "a task that was not in flight at the kill ran twice"
    assert max(runs.values()) <= 2
    for task_id in in_flight:
        assert tasks[task_id].attempts == 2  # the lost attempt and the one that completed
