"""A task that runs ten times longer than its visibility timeout, while the
heartbeat extends its lease, runs exactly once."""

from __future__ import annotations

from pathlib import Path

from .conftest import Store
from .kit import Ledger, Tqd, chaos_config, post, report

# The heartbeat extends at a third of the visibility timeout, so an event
# loop stalled for two thirds of it (a busy machine) would lose the lease:
# one second leaves room, and the task still runs ten times as long.
VISIBILITY = 1.0
RUNS_FOR = 10 * VISIBILITY


def test_heartbeat_keeps_a_long_task_running_once(store: Store, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    config = chaos_config(tmp_path, visibility=VISIBILITY, redis_prefix=store.prefix,
                          extra="[roles]\nsupervisor_interval = 0.1\n")
    tqd = Tqd(store.url, config, ledger.path)
    tqd.start()
    status, body = post(tqd.url, "/v1/tasks/batch",
                        {"tasks": [{"name": "record", "payload": {"seconds": RUNS_FOR}}] * 2})
    assert status == 201, body
    finished = []
    for t in body["tasks"]:
        _, task = tqd.daemon.call("GET", f"/v1/tasks/{t['id']}?wait=30", timeout=60)
        finished.append(task)
    assert tqd.stop() == 0
    runs = ledger.read()
    report(f"long task with heartbeat [{store.backend}]", visibility_s=VISIBILITY,
           runs_for_s=RUNS_FOR, tasks=len(finished),
           runs=sum(1 for r in runs.runs if r.kind == "start"))
    for task in finished:
        assert (task["state"], task["attempts"], task["errors"]) == ("completed", 1, [])
        assert len(runs.starts(task["id"])) == 1 and runs.ends()[task["id"]] == 1
    assert "reclaimed" not in tqd.stderr and "lost its lease" not in tqd.stderr
