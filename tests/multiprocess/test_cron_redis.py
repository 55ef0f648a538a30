"""Cron on one real Redis shared by three ``tqd serve`` processes: a
per-second schedule enqueues exactly one task per instant, while processes
are killed (SIGKILL) or stopped (SIGTERM) and started again during the run.

The default run lasts about 20 s. ``TQD_CRON_LONG=1`` runs for several
minutes (``TQD_CRON_SECONDS``, default 300) with a restart every 15 s.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

from tests.helpers.daemon import Daemon, wait_until

LONG = os.environ.get("TQD_CRON_LONG") == "1"
DURATION = float(os.environ.get("TQD_CRON_SECONDS", "300")) if LONG else 20.0
#: Seconds between restarts, and how long a stopped process stays down.
PERIOD, DOWN = (15.0, 3.0) if LONG else (6.0, 2.0)


def config(path: Path, prefix: str) -> Path:
    path.write_text(
        f'[redis]\nprefix = "{prefix}"\n'
        "[roles]\nheartbeat_interval = 0.5\nworker_ttl = 3.0\n"
        '[schedules.tick]\ncron = "* * * * * *"\ntask = "tqd.noop"\n'
    )
    return path


def cron_tasks(d: Daemon) -> list[dict]:
    out, cursor = [], None
    while True:
        path = "/v1/tasks?name=tqd.noop&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, page = d.call("GET", path)
        assert status == 200, page
        out += [t for t in page["tasks"] if (t["idempotency_key"] or "").startswith("cron:tick:")]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_three_processes_fire_each_instant_exactly_once(redis_server, redis_prefix, tmp_path):
    cfg = config(tmp_path / "tqd.toml", redis_prefix)
    procs: list[Daemon] = []

    def start() -> Daemon:
        d = Daemon(redis_server.url, config=cfg, args=["--log-level", "info"]).start()
        procs.append(d)
        return d

    running = [start(), start(), start()]
    restarts = {"SIGKILL": 0, "SIGTERM": 0}
    try:
        began = time.time()
        wait_until(lambda: cron_tasks(running[0]), timeout=20, message="a first firing")
        end = began + DURATION
        turn = 0
        while time.time() + PERIOD < end:
            time.sleep(PERIOD - DOWN)
            # Stop one process in turn, the others keep firing; start it again.
            i = turn % 3
            how = signal.SIGKILL if turn % 2 == 0 else signal.SIGTERM
            victim = running[i]
            if how == signal.SIGKILL:
                victim.kill()
            else:
                assert victim.stop(timeout=30) == 0
            restarts[how.name] += 1
            time.sleep(DOWN)
            running[i] = start()
            turn += 1
        time.sleep(max(0.0, end - time.time()))
        finished = time.time()
        tasks = cron_tasks(running[1])
    finally:
        for d in running:
            if d.proc is not None and d.proc.poll() is None:
                d.stop(timeout=30)
    assert restarts["SIGKILL"] >= 1 and restarts["SIGTERM"] >= 1, restarts
    instants = [int(t["idempotency_key"].rsplit(":", 1)[1]) for t in tasks]
    per_instant = Counter(instants)
    assert max(per_instant.values()) == 1, per_instant.most_common(3)
    first, last = min(instants), max(instants)
    missing = sorted(set(range(first, last + 1)) - set(instants))
    assert not missing, f"instants without a task: {missing}"
    # Fired from the start of the run to its end (not just a short stretch).
    assert first <= began + 20 and last >= finished - 3, (first - began, finished - last)
    assert last - first + 1 >= DURATION - 20
    # No firing needed the second guard: every claim was decided by the store.
    for d in procs:
        assert "was enqueued already" not in d.stderr, d.stderr
    print(f"\ncron over {finished - began:.0f}s: {len(instants)} instants, one task each; "
          f"restarts {restarts}")
