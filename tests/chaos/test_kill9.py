"""kill -9 loop: N tasks (half of them in fair groups) recording their runs in
a ledger outside tqd, K SIGKILLs of tqd at random moments, a restart after
each. Nothing acknowledged is lost; a task runs twice only if it was in
flight at a kill."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from tests.helpers.daemon import wait_until

from .conftest import Store
from .kit import LONG, Ledger, Tqd, chaos_config, post, report, scale, store_tasks

VISIBILITY = 3.0


def test_kill_9_loop(store: Store, tmp_path: Path) -> None:
    # On Redis a kill waits a visibility timeout more (the leases of the dead
    # process must run out before the tasks come back), so it needs more work.
    tasks = scale(400, 4000) if store.backend == "sqlite" else scale(1200, 12000)
    kills = scale(5, 40)
    seed = int(os.environ.get("TQD_CHAOS_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    ledger = Ledger(tmp_path / "ledger")
    config = chaos_config(tmp_path, visibility=VISIBILITY, redis_prefix=store.prefix,
                          extra="[worker]\nconcurrency = 10\n")
    tqd = Tqd(store.url, config, ledger.path)
    tqd.start()

    acknowledged: list[str] = []
    for start in range(0, tasks, 500):
        # Every other task in one of 7 fair groups: the grouped lease keeps
        # its heads in memory (SQLite), and a kill must not lose its place.
        batch = [{"name": "record", "payload": {"seconds": round(rng.uniform(0.05, 0.4), 3)},
                  **({"group": f"tenant-{i % 7}"} if i % 2 else {})}
                 for i in range(start, start + min(500, tasks - start))]
        status, body = post(tqd.url, "/v1/tasks/batch", {"tasks": batch})
        assert status == 201, body
        acknowledged += [t["id"] for t in body["tasks"]]

    in_flight: list[set[str]] = []  # per kill: the tasks tqd held
    restarts: list[float] = []
    for _ in range(kills):
        pause = rng.uniform(0.3, 1.5) + (VISIBILITY if store.backend == "redis" else 0.0)
        time.sleep(pause)  # the random moment of the kill (not a wait for a condition)
        if len(ledger.read().ends()) == tasks:
            break  # everything ran: more kills would hit an idle tqd
        tqd.kill()
        in_flight.append({t.id for t in store_tasks(store.url, "processing", store.prefix)})
        tqd.start()
        restarts.append(tqd.started_at)

    wait_until(lambda: len(ledger.read().ends()) == tasks, timeout=scale(180, 1800),
               interval=0.2, message="every task ran")
    wait_until(lambda: tqd.daemon.call("GET", "/v1/queues")[1]["queues"][0]["counts"]["completed"]
               == tasks, timeout=60, message="every task completed")
    assert tqd.stop() == 0

    final = {t.id: t for t in store_tasks(store.url, prefix=store.prefix)}
    ends = ledger.read().ends()
    lost = [i for i in acknowledged if final.get(i) is None or final[i].state != "completed"
            or ends.get(i, 0) == 0]
    duplicates = sum(n - 1 for n in ends.values())
    held = sum(len(s) for s in in_flight)
    # each extra run belongs to a kill that caught the task in flight
    for task_id, n in ends.items():
        assert n - 1 <= sum(task_id in s for s in in_flight), (task_id, n)
    # recovery: from the start of the tqd that re-ran a task taken back, to that run
    recoveries = []
    for k, held_at_kill in enumerate(in_flight):
        for task_id in held_at_kill:
            later = [s for s in ledger.starts(task_id) if s > restarts[k]]
            if later:
                restart = max(r for r in restarts if r <= later[0])
                recoveries.append(later[0] - restart)
    report(f"kill -9 loop [{store.backend}]", tasks=tasks, kills=len(in_flight), lost=len(lost),
           duplicates=duplicates, in_flight_at_kills=held,
           worst_recovery_s=max(recoveries, default=0.0),
           mean_recovery_s=sum(recoveries) / len(recoveries) if recoveries else 0.0,
           seed=seed, long=LONG)
    assert lost == []
    assert duplicates <= held
    assert len(in_flight) >= min(kills, 2)  # the kills happened while work remained
