"""Statistics on SQLite: the ``stats`` table (migration 2).

Both functions run on a thread of the store (see threads.py); recording runs
on the writer, inside a group commit, and deletes the rows that have aged
out of their retention at the same time, so the table stays bounded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from tqd.histogram import merge_into
from tqd.models import StatsBucket
from tqd.storage.base import STATS_KEEP

_UPSERT = (
    "INSERT INTO stats(step, queue, t, enqueued, completed, failed, latency) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(step, queue, t) DO UPDATE SET "
    "enqueued = enqueued + excluded.enqueued, completed = completed + excluded.completed, "
    "failed = failed + excluded.failed, latency = COALESCE(excluded.latency, latency)"
)


def _hist(raw: bytes | None) -> dict[int, int]:
    return {int(k): v for k, v in orjson.loads(raw).items()} if raw else {}


def op_record_stats(
    conn: sqlite3.Connection, changes: list, buckets: Sequence[StatsBucket], now: float
) -> None:
    """Add ``buckets`` into the per-second and per-minute rows; drop aged rows."""
    for step, keep in STATS_KEEP.items():
        oldest = int(now) - keep
        conn.execute("DELETE FROM stats WHERE step = ? AND t < ?", (step, oldest))
        for b in buckets:
            t = b.t - b.t % step
            if t < oldest:
                continue
            latency = None
            if b.latency:
                # Histograms cannot be added in SQL; the writer thread is the
                # only writer, so reading and writing back here is safe.
                row = conn.execute(
                    "SELECT latency FROM stats WHERE step = ? AND queue = ? AND t = ?",
                    (step, b.queue, t),
                ).fetchone()
                merged = merge_into(_hist(row[0] if row else None), b.latency)
                latency = orjson.dumps(merged, option=orjson.OPT_NON_STR_KEYS)
            conn.execute(
                _UPSERT, (step, b.queue, t, b.enqueued, b.completed, b.failed, latency)
            )


def op_stats(
    conn: sqlite3.Connection, changes: list, step: int, since: int, until: int, queue: str
) -> list[StatsBucket]:
    """The rows of one queue and resolution within ``[since, until]``, oldest first."""
    rows = conn.execute(
        "SELECT t, enqueued, completed, failed, latency FROM stats "
        "WHERE step = ? AND queue = ? AND t >= ? AND t <= ? ORDER BY t",
        (step, queue, since, until),
    ).fetchall()
    return [
        StatsBucket(t=t, queue=queue, enqueued=e, completed=c, failed=f, latency=_hist(h))
        for t, e, c, f, h in rows
    ]
