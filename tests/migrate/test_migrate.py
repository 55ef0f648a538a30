"""``tqd migrate`` between a real SQLite file and a real redis-server, both ways."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.helpers.daemon import ROOT, tqd_env
from tests.storage.helpers import TaskMaker, complete, fail
from tqd.clock import FakeClock
from tqd.models import STATES, Firing, ProgressReport, Task, WorkerInfo
from tqd.storage.base import Storage
from tqd.storage.redis import RedisStorage
from tqd.storage.sqlite import SqliteStorage


def run_migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tqd", "migrate", *args], capture_output=True, text=True,
        env=tqd_env(), cwd=ROOT, timeout=60,
    )


async def everything(storage: Storage) -> dict[str, Task]:
    out, cursor = {}, None
    while True:
        page = await storage.list(limit=500, cursor=cursor)
        out.update((t.id, t) for t in page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            return out


async def fill(storage: Storage) -> dict[str, list[Task]]:
    """Tasks in every state, made by the store's own operations, in two queues."""
    clock = FakeClock(1_800_000_000.0)
    make = TaskMaker(clock)
    await storage.enqueue(
        [make(key=f"k{i}", priority=i % 3, payload=b'{"i":%d}' % i) for i in range(40)]
        + [make(queue="mail", delay=60.0) for _ in range(5)]
        + [make(queue="mail") for _ in range(6)]
        + [make(queue="mail", unique=f"acct-{i}") for i in range(2)]
    )
    clock.advance(1.0)
    leased = await storage.lease("q", 20, "old-host:1:aa", clock.now())
    await storage.settle([complete(t, b'{"done":1}') for t in leased[:8]], clock.now())
    await storage.settle([fail(t, retry_at=clock.now() + 99, at=clock.now()) for t in leased[8:11]],
                         clock.now())
    await storage.settle([fail(t, at=clock.now()) for t in leased[11:14]], clock.now())
    await storage.cancel(leased[14].id, clock.now())
    # leased[15:20] stay processing: their process "died" with the lease open
    t = leased[15]
    assert await storage.report_progress([ProgressReport(t.id, t.lease_token, 0.5, "half")])
    await storage.set_paused("mail", True)
    await storage.claim_firing("nightly", clock.now() - 60, clock.now() - 59)
    return {"processing": leased[15:20]}


def expected_copy(source: dict[str, Task], processing: list[Task]) -> dict[str, Task]:
    out = dict(source)
    for t in processing:
        out[t.id] = t  # compared field by field below
    return out


def assert_same_tasks(copied: dict[str, Task], source: dict[str, Task]) -> None:
    assert set(copied) == set(source)
    for task_id, was in source.items():
        now = copied[task_id]
        if was.state != "processing":
            assert now == was, task_id
            continue
        # taken back as the supervisor would: the lost attempt counts
        assert now.state == "pending" and now.attempts == was.attempts + 1
        assert now.errors[:-1] == was.errors and now.errors[-1]["kind"] == "lost"
        assert now.lease_token is None and now.lease_expires_at is None and now.worker is None
        rest = msgspec.structs.replace(now, state=was.state, attempts=was.attempts,
                                       errors=was.errors, worker=was.worker,
                                       lease_token=was.lease_token,
                                       lease_expires_at=was.lease_expires_at)
        assert rest == was


async def lease_order(storage: Storage, queue: str) -> list[str]:
    return [t.id for t in await storage.lease(queue, 1000, "probe", 1_900_000_000.0)]


async def test_sqlite_to_redis_and_back(tmp_path: Path, redis_server, redis_prefix):
    first = str(tmp_path / "first.db")
    src = SqliteStorage(first)
    await src.open()
    made = await fill(src)
    source = await everything(src)
    await src.close()
    config = tmp_path / "tqd.toml"
    config.write_text(f'[redis]\nprefix = "{redis_prefix}"\n')

    done = run_migrate("--from", f"sqlite://{first}", "--to", redis_server.url,
                       "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "counts match" in done.stdout
    assert "5 pending again" in done.stdout
    assert "paused: mail" in done.stdout
    assert "cron firings: 1" in done.stdout

    redis = RedisStorage(redis_server.url, prefix=redis_prefix)
    await redis.open()
    try:
        assert_same_tasks(await everything(redis), source)
        assert await redis.paused_queues() == {"mail"}
        assert {q.name for q in await redis.queues()} == {"q", "mail"}
        assert await redis.firings() == {"nightly": Firing(1_800_000_000.0 - 59, 1_800_000_000.0 - 58)}
    finally:
        await redis.close()

    second = str(tmp_path / "second.db")
    back = run_migrate("--from", redis_server.url, "--to", f"sqlite://{second}",
                       "--config", str(config))
    assert back.returncode == 0, back.stderr
    assert "counts match" in back.stdout

    # the round trip gives the first store back, with the open leases taken back
    again, orig = SqliteStorage(second), SqliteStorage(first)
    await again.open()
    await orig.open()
    try:
        assert_same_tasks(await everything(again), source)
        assert await again.paused_queues() == {"mail"}
        for q in STATES:
            assert (await again.queue("q")).counts[q] == (
                (await orig.queue("q")).counts[q]
                + {"pending": 5, "processing": -5}.get(q, 0)
            )
        # first in, first out as in the source: the source, with its orphans
        # taken back, leases in the same order
        await orig.reclaim_orphans(1_800_000_002.0)
        assert await lease_order(again, "q") == await lease_order(orig, "q")
    finally:
        await again.close()
        await orig.close()
    assert len(made["processing"]) == 5


async def test_a_target_with_tasks_is_refused_unless_forced(tmp_path: Path):
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    for path, n in ((a, 30), (b, 0)):
        s = SqliteStorage(path)
        await s.open()
        make = TaskMaker(FakeClock())
        await s.enqueue(make.many(n)) if n else None
        await s.close()
    assert run_migrate("--from", f"sqlite://{a}", "--to", f"sqlite://{b}").returncode == 0
    refused = run_migrate("--from", f"sqlite://{a}", "--to", f"sqlite://{b}")
    assert refused.returncode == 2
    assert "already holds 30 tasks" in refused.stderr and "Traceback" not in refused.stderr
    forced = run_migrate("--from", f"sqlite://{a}", "--to", f"sqlite://{b}", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "skipped: 30 already in the target" in forced.stdout
    assert "copied 0 tasks" in forced.stdout


async def test_a_store_in_use_is_refused(tmp_path: Path, redis_server, redis_prefix):
    db = str(tmp_path / "busy.db")
    busy = SqliteStorage(db)
    await busy.open()  # as a running daemon holds it
    try:
        out = run_migrate("--from", f"sqlite://{db}", "--to", f"sqlite://{tmp_path}/x.db")
        assert out.returncode == 2 and "in use by another tqd process" in out.stderr
    finally:
        await busy.close()

    live = RedisStorage(redis_server.url, prefix=redis_prefix)
    await live.open()
    try:
        info = WorkerInfo(id="h:9:ff", host="h", pid=9, version="x", started_at=0.0,
                          concurrency=1)
        import time

        await live.register_worker(info, 60.0, time.time())
        config = tmp_path / "tqd.toml"
        config.write_text(f'[redis]\nprefix = "{redis_prefix}"\n')
        out = run_migrate("--from", redis_server.url, "--to", f"sqlite://{tmp_path}/y.db",
                          "--config", str(config))
        assert out.returncode == 2
        assert "in use by 1 tqd process(es): h:9:ff" in out.stderr
    finally:
        await live.close()


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        (["--from", "sqlite:///nowhere/a.db", "--to", "sqlite:///tmp/b.db"], 2, "does not exist"),
        (["--from", "mysql://x", "--to", "sqlite:///tmp/b.db"], 2, "unsupported storage scheme"),
        (["--from", "redis://127.0.0.1:1/0", "--to", "sqlite:///tmp/b.db"], 3, "cannot reach"),
        (["--from", "sqlite:///tmp/a.db", "--to", "sqlite:///tmp/a.db"], 2, "the same store"),
    ],
)
def test_bad_arguments_get_one_line(args, status, words):
    out = run_migrate(*args)
    assert out.returncode == status
    assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
