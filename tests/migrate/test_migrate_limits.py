"""``tqd migrate`` carries queue limits, the digest of the config settings last
applied to each queue, and each task's group (SQLite → Redis → SQLite).

Needs both backends' limits and groups (issue 8).
"""

from __future__ import annotations

from pathlib import Path

from tests.migrate.test_migrate import everything, run_migrate
from tests.storage.helpers import TaskMaker
from tqd.clock import FakeClock
from tqd.models import NO_LIMITS, QueueLimits
from tqd.storage.redis import RedisStorage
from tqd.storage.sqlite import SqliteStorage

LIMITS = QueueLimits(concurrency=3, rate_limit=50, rate_interval=60.0, rate_burst=10,
                     group_concurrency=2)


async def test_limits_digest_and_groups_survive_the_round_trip(
    tmp_path: Path, redis_server, redis_prefix
) -> None:
    first = str(tmp_path / "first.db")
    src = SqliteStorage(first)
    await src.open()
    clock = FakeClock(1_800_000_000.0)
    make = TaskMaker(clock)
    await src.enqueue([make(group="tenant-a"), make(group="tenant-b"), make(),
                       make(queue="bare", group="x")])
    await src.set_limits("q", LIMITS, clock.now(), config_digest="v1:from-a-file")
    await src.set_limits("runtime-only", QueueLimits(concurrency=1), clock.now())
    source = await everything(src)
    await src.close()
    config = tmp_path / "tqd.toml"
    config.write_text(f'[redis]\nprefix = "{redis_prefix}"\n')

    done = run_migrate("--from", f"sqlite://{first}", "--to", redis_server.url,
                       "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "with limits: q, runtime-only;" in done.stdout, done.stdout

    redis = RedisStorage(redis_server.url, prefix=redis_prefix)
    await redis.open()
    try:
        q = await redis.queue("q")
        assert q.limits == LIMITS and q.config_digest == "v1:from-a-file"
        runtime = await redis.queue("runtime-only")
        assert runtime.limits == QueueLimits(concurrency=1) and runtime.config_digest is None
        bare = await redis.queue("bare")
        assert bare.limits == NO_LIMITS and bare.config_digest is None
        copied = await everything(redis)
        assert {i: t.group for i, t in copied.items()} == {i: t.group for i, t in source.items()}
    finally:
        await redis.close()

    second = str(tmp_path / "second.db")
    back = run_migrate("--from", redis_server.url, "--to", f"sqlite://{second}",
                       "--config", str(config))
    assert back.returncode == 0, back.stderr
    again = SqliteStorage(second)
    await again.open()
    try:
        q = await again.queue("q")
        assert q.limits == LIMITS and q.config_digest == "v1:from-a-file"
        assert await everything(again) == source
    finally:
        await again.close()
