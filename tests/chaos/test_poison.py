"""A poison task that kills the whole tqd process every time it runs ends in
``failed`` after its attempts, instead of crashing tqd forever; the other
tasks run. On SQLite a restarted tqd takes the orphaned lease back at once
(no wait for the visibility timeout) and counts the lost attempt."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.helpers.daemon import wait_until

from .conftest import Store
from .kit import Ledger, Tqd, chaos_config, post, report, store_tasks

MAX_ATTEMPTS = 3  # of the poison task, in chaos_config


def test_poison_task_ends_failed(store: Store, tmp_path: Path) -> None:
    # SQLite must not wait for the lease to run out: a long one proves it
    visibility = 600.0 if store.backend == "sqlite" else 2.0
    ledger = Ledger(tmp_path / "ledger")
    config = chaos_config(tmp_path, visibility=visibility, redis_prefix=store.prefix,
                          extra="[roles]\nsupervisor_interval = 0.2\n")
    tqd = Tqd(store.url, config, ledger.path)
    tqd.start()
    status, body = post(tqd.url, "/v1/tasks/batch", {"tasks": [
        {"name": "poison"}, *[{"name": "record", "payload": {"seconds": 0.01}}] * 20]})
    assert status == 201, body
    poison_id, others = body["tasks"][0]["id"], [t["id"] for t in body["tasks"][1:]]

    def died_or_failed() -> bool:
        if tqd.daemon.proc.poll() is not None:
            return True
        try:
            return tqd.daemon.call("GET", f"/v1/tasks/{poison_id}")[1]["state"] == "failed"
        except OSError:  # dying right now
            return False

    deaths, began = 0, time.monotonic()
    attempts_seen: list[int] = []
    while True:
        wait_until(died_or_failed, timeout=60, interval=0.1,
                   message="tqd died or the poison task failed")
        if tqd.daemon.proc.poll() is None:
            break
        assert tqd.daemon.proc.returncode == -9  # killed by the poison, not exited
        deaths += 1
        tqd.stderr += tqd.daemon.stderr
        attempts_seen.append(
            next(t for t in store_tasks(store.url, prefix=store.prefix) if t.id == poison_id).attempts)
        assert deaths <= MAX_ATTEMPTS, "tqd keeps dying"
        tqd.start()  # as systemd's Restart= would

    _, poison = tqd.daemon.call("GET", f"/v1/tasks/{poison_id}")
    took = time.monotonic() - began
    for task_id in others:
        _, task = tqd.daemon.call("GET", f"/v1/tasks/{task_id}?wait=30")
        assert task["state"] == "completed"
    assert tqd.stop() == 0
    report(f"poison task [{store.backend}]", max_attempts=MAX_ATTEMPTS, deaths=deaths,
           final_state=poison["state"], attempts=poison["attempts"], visibility_s=visibility,
           took_s=took)
    assert deaths == MAX_ATTEMPTS
    assert (poison["state"], poison["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert [e["kind"] for e in poison["errors"]] == ["lost"] * MAX_ATTEMPTS
    # the attempt that died is counted when the lease is taken back, after the death
    assert attempts_seen == list(range(MAX_ATTEMPTS))
    assert len(ledger.read().starts(poison_id)) == MAX_ATTEMPTS
    if store.backend == "sqlite":
        assert took < visibility / 4  # orphaned leases came back at once, not at expiry
        took_back = re.findall(r"took back (\d+) tasks left processing by a previous run", tqd.stderr)
        assert len(took_back) == MAX_ATTEMPTS, tqd.stderr
