"""Statistics kept in the store: record_stats adds, stats reads, old buckets age out."""

from __future__ import annotations

import pytest

from tqd.models import ALL_QUEUES, StatsBucket
from tqd.storage.base import SHARED, STATS_KEEP


def sb(t: int, queue: str = "q", e: int = 0, c: int = 0, f: int = 0, lat=None) -> StatsBucket:
    return StatsBucket(t=t, queue=queue, enqueued=e, completed=c, failed=f, latency=lat or {})


def counts(buckets: list[StatsBucket]) -> list[tuple]:
    return [(b.t, b.enqueued, b.completed, b.failed, b.latency) for b in buckets]


@pytest.fixture
def t0(clock) -> int:
    """A minute boundary near the clock's now."""
    now = int(clock.now())
    return now - now % 60


async def test_seconds_are_kept_apart_and_minutes_sum_them(storage, clock, t0):
    clock.advance(t0 + 5 - clock.now())
    await storage.record_stats(
        [sb(t0, e=3, c=1, lat={10: 2}), sb(t0 + 1, e=1, f=2), sb(t0 + 61, c=7)], clock.now()
    )
    assert counts(await storage.stats(1, t0 - 10, t0 + 100, "q")) == [
        (t0, 3, 1, 0, {10: 2}),
        (t0 + 1, 1, 0, 2, {}),
        (t0 + 61, 0, 7, 0, {}),
    ]
    assert counts(await storage.stats(60, t0 - 60, t0 + 100, "q")) == [
        (t0, 4, 1, 2, {10: 2}),
        (t0 + 60, 0, 7, 0, {}),
    ]


async def test_records_add_up_as_several_processes_would(storage, new_storage, clock, t0):
    writers = [storage]
    if SHARED in storage.capabilities:
        other = new_storage()
        await other.open()
        writers.append(other)
    try:
        for i, w in enumerate(writers * 2):
            await w.record_stats([sb(t0, e=1, c=i, lat={5: 1, 9: i})], clock.now())
        n = len(writers) * 2
        [b] = await storage.stats(1, t0, t0, "q")
        assert (b.enqueued, b.completed) == (n, sum(range(n)))
        assert b.latency == {5: n, 9: sum(range(n))}
    finally:
        for w in writers[1:]:
            await w.close()


async def test_queues_and_the_total_are_separate_series(storage, clock, t0):
    await storage.record_stats(
        [sb(t0, "a", e=1), sb(t0, "b", e=2), sb(t0, ALL_QUEUES, e=3)], clock.now()
    )
    assert [b.enqueued for b in await storage.stats(1, t0, t0, "a")] == [1]
    assert [b.enqueued for b in await storage.stats(1, t0, t0, "b")] == [2]
    assert [b.enqueued for b in await storage.stats(1, t0, t0)] == [3]
    assert await storage.stats(1, t0, t0, "never-seen") == []


async def test_a_range_holds_only_its_buckets_oldest_first(storage, clock, t0):
    await storage.record_stats([sb(t0 + i, e=i + 1) for i in (4, 0, 2)], clock.now())
    assert [b.t for b in await storage.stats(1, t0, t0 + 10, "q")] == [t0, t0 + 2, t0 + 4]
    assert [b.t for b in await storage.stats(1, t0 + 1, t0 + 3, "q")] == [t0 + 2]
    assert await storage.stats(1, t0 + 5, t0 + 10, "q") == []


async def test_buckets_age_out_after_their_retention(storage, clock, t0):
    clock.advance(t0 - clock.now() + 1)
    await storage.record_stats([sb(t0, e=1)], clock.now())
    clock.advance(STATS_KEEP[1] + 30)
    now = int(clock.now())
    await storage.record_stats([sb(now, e=2)], clock.now())
    assert [b.enqueued for b in await storage.stats(1, t0 - 100, now, "q")] == [2]
    # the per-minute buckets are kept for a day
    minutes = await storage.stats(60, t0 - 100, now, "q")
    assert [b.enqueued for b in minutes] == [1, 2]
    # a bucket already past its retention is not recorded at all
    await storage.record_stats([sb(t0, e=5)], clock.now())
    assert [b.enqueued for b in await storage.stats(1, t0 - 100, now, "q")] == [2]


async def test_bad_arguments_are_refused(storage, clock, t0):
    with pytest.raises(ValueError):
        await storage.record_stats([sb(t0, "bad queue")], clock.now())
    with pytest.raises(ValueError):
        await storage.stats(5, t0, t0)
    await storage.record_stats([], clock.now())  # nothing to do


async def test_sqlite_deletes_aged_rows_so_the_table_stays_bounded(tmp_path):
    import sqlite3

    from tqd.clock import FakeClock
    from tqd.storage.sqlite import SqliteStorage

    clock = FakeClock()
    path = str(tmp_path / "tqd.db")
    s = SqliteStorage(path)
    await s.open()
    try:
        # Two hours of one busy queue, recorded second by second in chunks.
        for _ in range(120):
            start = int(clock.now())
            await s.record_stats([sb(start + i, e=1, lat={3: 1}) for i in range(60)], clock.now())
            clock.advance(60)
    finally:
        await s.close()
    with sqlite3.connect(path) as conn:
        rows = dict(conn.execute("SELECT step, count(*) FROM stats GROUP BY step").fetchall())
    # per-second rows of the last 11 minutes at most; all 120 minutes are within a day
    assert rows[1] <= STATS_KEEP[1] + 60
    assert rows[60] == 120
