"""What leasing from fair groups costs the SQLite writer, without HTTP.

    PYTHONPATH=. python tools/bench_group_lease.py [--groups 100] [--tasks 20000] [--batch 100]

Fills a SQLite store as ``tqd bench --queue-limits --groups N`` does (each
enqueue of ``--batch`` tasks names the groups in turn; ``--groups 0``: no
groups), with limits that never bind, then leases ``--batch`` tasks and
completes them until the queue is empty, calling the storage operations on
one connection in this thread, each in its own transaction as the writer
runs it. Prints one JSON line: this thread's CPU seconds for the leases
(with their commits) and for the settles, and the pages each lease commit
wrote to the WAL (a lease that rewrites an index entry in every group it
serves writes a page per group). Compare --groups 100 with --groups 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

from tqd.clock import FakeClock
from tqd.ids import IdGenerator
from tqd.models import Outcome, QueueLimits, Task
from tqd.storage.sqlite import SqliteStorage, consume
from tqd.storage.sqlite.threads import connect

QUEUE = "bench"
NEVER_BINDS = QueueLimits(concurrency=1_000_000, rate_limit=100_000_000, rate_interval=1,
                          group_concurrency=10_000)


async def _fill(path: str, groups: int, tasks: int, batch: int) -> None:
    clock, ids = FakeClock(1000.0), IdGenerator()
    store = SqliteStorage(path)
    await store.open()
    try:
        await store.set_limits(QUEUE, NEVER_BINDS, clock.now())
        for start in range(0, tasks, batch):
            now = clock.now()
            await store.enqueue([
                Task(id=ids.new(now), name="tqd.noop", queue=QUEUE, payload=b"null", priority=0,
                     state="pending", max_attempts=3, attempt_budget=3, created_at=now,
                     visibility_timeout=30.0, group=f"g{i % groups}" if groups else None)
                for i in range(min(batch, tasks - start))
            ])
    finally:
        await store.close()


def _wal_frames(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal") // (4096 + 24)
    except OSError:
        return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--groups", type=int, default=100)
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="tqd-group-lease-") as tmp:
        path = f"{tmp}/bench.db"
        asyncio.run(_fill(path, args.groups, args.tasks, args.batch))
        conn = connect(path, synchronous="full")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # so the WAL's growth counts the pages
        lease_s = settle_s = 0.0
        leases = pages = 0
        while True:
            frames, started = _wal_frames(path), time.thread_time()
            conn.execute("BEGIN IMMEDIATE")
            leased = consume.op_lease(conn, [], QUEUE, args.batch, "bench", 2000.0)
            conn.execute("COMMIT")
            lease_s += time.thread_time() - started
            if not leased:
                break
            leases += 1
            pages += _wal_frames(path) - frames
            started = time.thread_time()
            conn.execute("BEGIN IMMEDIATE")
            consume.op_settle(conn, [], [
                Outcome(task_id=t.id, token=t.lease_token or "", kind="complete", result=b"null",
                        queue=t.queue, name=t.name)
                for t in leased
            ], 2000.0)
            conn.execute("COMMIT")
            settle_s += time.thread_time() - started
            if leases % 50 == 0:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    print(json.dumps({"groups": args.groups, "tasks": args.tasks, "batch": args.batch,
                      "lease_cpu_s": round(lease_s, 3), "settle_cpu_s": round(settle_s, 3),
                      "wal_pages_per_lease": round(pages / max(1, leases), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
