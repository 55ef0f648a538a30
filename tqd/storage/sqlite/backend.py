"""The embedded store: one SQLite file in WAL mode.

Writes go through one writer thread with group commit, reads through one
reader thread (see threads.py). Each ``_op_*`` function below runs on one
of those threads, inside the group's transaction for writes, and appends the
change events it causes. Only one tqd process may use a file at a time; a
lock file next to it enforces that, which is also why a restarted daemon may
take back its predecessor's leases at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from tqd.errors import BadRequest, ConfigError, Conflict, NotFound, StorageUnavailable
from tqd.models import (
    DELETED,
    ERROR_HISTORY,
    STATES,
    Change,
    Outcome,
    QueueChange,
    QueueInfo,
    StatsBucket,
    Task,
    WorkerInfo,
    make_error,
    zero_counts,
)
from tqd.storage.base import DURABLE_FSYNC, EnqueueResult, Page, Storage
from tqd.storage.sqlite.schema import TASK_COLUMNS, migrate
from tqd.storage.sqlite.stats import op_record_stats, op_stats
from tqd.storage.sqlite.threads import Reader, Writer, connect

_SELECT = f"SELECT {TASK_COLUMNS} FROM tasks"
_ERRORS_COL = 14  # position of ``errors`` in TASK_COLUMNS


def _task(row: Sequence[Any]) -> Task:
    errors = row[_ERRORS_COL]
    if errors is None:
        return Task(*row[:_ERRORS_COL], [], *row[_ERRORS_COL + 1 :])
    return Task(*row[:_ERRORS_COL], orjson.loads(errors), *row[_ERRORS_COL + 1 :])


def _task_or_none(row: Sequence[Any] | None) -> Task | None:
    return None if row is None else _task(row)


class SqliteStorage(Storage):
    """The Storage contract on one SQLite file (see module docstring)."""

    kind = "sqlite"

    def __init__(
        self, path: str, *, synchronous: str = "full", max_group: int = 2000, exclusive: bool = True
    ) -> None:
        super().__init__()
        self.path = path
        self.synchronous = synchronous
        self.max_group = max_group
        self.exclusive = exclusive
        self.capabilities = frozenset({DURABLE_FSYNC} if synchronous == "full" else set())
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._lock_fd: int | None = None

    # -- life ---------------------------------------------------------------

    async def open(self) -> None:
        if self.exclusive:
            self._take_lock()
        loop = asyncio.get_running_loop()
        wconn = None
        try:
            wconn = connect(self.path, synchronous=self.synchronous)
            migrate(wconn, self.path)
            rconn = connect(self.path, synchronous=self.synchronous, readonly=True)
        except BaseException as err:
            # A refused open (also migrate's ConfigError) leaves nothing held.
            if wconn is not None:
                wconn.close()
            self._release_lock()
            if isinstance(err, sqlite3.Error):
                raise ConfigError(f"storage: cannot open SQLite file {self.path!r}: {err}") from None
            raise
        self._writer = Writer(wconn, loop, self._emit, self.max_group, "tqd-sqlite-writer")
        self._reader = Reader(rconn, loop, self._emit, 64, "tqd-sqlite-reader")
        self._writer.start()
        self._reader.start()

    def _take_lock(self) -> None:
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise ConfigError(f"storage: cannot create lock file {lock_path!r}: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"storage: {self.path!r} is in use by another tqd process (lock {lock_path!r})"
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def close(self) -> None:
        threads = [t for t in (self._writer, self._reader) if t is not None]
        for t in threads:
            t.stop()
        loop = asyncio.get_running_loop()
        for t in threads:
            await loop.run_in_executor(None, t.join)
        self._writer = self._reader = None
        self._release_lock()

    def _write(self, fn: Any, *args: Any) -> asyncio.Future:
        if self._writer is None:
            raise StorageUnavailable("storage: the SQLite store is not open")
        return self._writer.submit(fn, *args)

    def _read(self, fn: Any, *args: Any) -> asyncio.Future:
        if self._reader is None:
            raise StorageUnavailable("storage: the SQLite store is not open")
        return self._reader.submit(fn, *args)

    async def ping(self) -> None:
        await self._read(_op_ping)

    # -- contract -----------------------------------------------------------

    async def _enqueue(self, tasks: Sequence[Task]) -> list[EnqueueResult]:
        return await self._write(_op_enqueue, tasks)

    async def _lease(self, queue: str, limit: int, worker: str, now: float) -> list[Task]:
        return await self._write(_op_lease, queue, limit, worker, now)

    async def _extend(self, leases: Sequence[tuple[str, str]], now: float) -> list[bool]:
        return await self._write(_op_extend, leases, now)

    async def _settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        return await self._write(_op_settle, outcomes, now)

    async def _reclaim_expired(self, now: float, limit: int) -> list[Task]:
        return await self._write(_op_reclaim, "lease_expires_at < ?", (now,), now, limit)

    async def _reclaim_worker(self, worker: str, now: float) -> list[Task]:
        return await self._write(_op_reclaim, "worker = ?", (worker,), now, -1)

    async def _reclaim_orphans(self, now: float) -> list[Task]:
        return await self._write(_op_reclaim, "1 = 1", (), now, -1)

    async def _promote_due(self, now: float, limit: int) -> int:
        return await self._write(_op_promote, now, limit)

    async def next_run_at(self) -> float | None:
        return await self._read(_op_next_run_at)

    async def _expire_finished(self, state: str, before: float, limit: int) -> int:
        return await self._write(_op_expire, state, before, limit)

    async def get(self, task_id: str) -> Task | None:
        return await self._read(_op_get, task_id)

    async def _list(
        self, state: str | None, queue: str | None, name: str | None, limit: int, cursor: str | None
    ) -> Page:
        before = None
        if cursor is not None:
            try:
                before = int(cursor)
            except ValueError:
                raise BadRequest("cursor: not a cursor returned by this API") from None
        return await self._read(_op_list, state, queue, name, limit, before)

    async def _cancel(self, task_id: str, now: float) -> Task:
        return await self._write(_op_cancel, task_id, now)

    async def _retry(self, task_id: str, now: float) -> Task:
        return await self._write(_op_retry, task_id, now)

    async def _delete(self, task_id: str) -> None:
        await self._write(_op_delete, task_id)

    async def declare_queues(self, names: Sequence[str]) -> None:
        if names:
            await self._write(_op_declare, list(names))

    async def queues(self) -> list[QueueInfo]:
        return await self._read(_op_queues, None)

    async def _queue(self, name: str) -> QueueInfo | None:
        found = await self._read(_op_queues, name)
        return found[0] if found else None

    async def _set_paused(self, name: str, paused: bool) -> None:
        await self._write(_op_set_paused, name, paused)

    async def paused_queues(self) -> set[str]:
        return await self._read(_op_paused)

    async def _purge(self, queue: str, state: str, limit: int) -> int:
        return await self._write(_op_purge, queue, state, limit)

    async def _redrive(self, queue: str, now: float, limit: int) -> int:
        return await self._write(_op_redrive, queue, now, limit)

    async def register_worker(self, info: WorkerInfo, ttl: float, now: float) -> None:
        await self._write(_op_register, info.id, msgspec.json.encode(info), now + ttl)

    async def unregister_worker(self, worker_id: str) -> None:
        await self._write(_op_unregister, worker_id)

    async def workers(self, now: float) -> list[WorkerInfo]:
        rows = await self._read(_op_workers, now)
        return [msgspec.json.decode(r, type=WorkerInfo) for r in rows]

    async def _record_stats(self, buckets: Sequence[StatsBucket], now: float) -> None:
        await self._write(op_record_stats, buckets, now)

    async def _stats(self, step: int, since: int, until: int, queue: str) -> list[StatsBucket]:
        return await self._read(op_stats, step, since, until, queue)


# -- operations (run on the writer or reader thread) -------------------------

_INSERT = (
    f"INSERT INTO tasks ({TASK_COLUMNS}) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _op_ping(conn: sqlite3.Connection, changes: list) -> None:
    conn.execute("SELECT 1").fetchone()


def _op_enqueue(conn: sqlite3.Connection, changes: list, tasks: Sequence[Task]) -> list:
    results: list[EnqueueResult | None] = [None] * len(tasks)
    rows = []
    seen_keys: dict[tuple[str, str], Task] = {}
    for i, t in enumerate(tasks):
        key = t.idempotency_key
        if key is not None:
            prior = seen_keys.get((t.queue, key))
            if prior is None:
                prior = _task_or_none(conn.execute(
                    f"{_SELECT} WHERE queue = ? AND idempotency_key = ?", (t.queue, key)
                ).fetchone())
            if prior is not None:
                results[i] = EnqueueResult(prior, False)
                continue
            seen_keys[(t.queue, key)] = t
        rows.append(
            (
                t.id, t.name, t.queue, t.payload, t.priority, t.state, t.attempts,
                t.max_attempts, t.attempt_budget, t.created_at, t.run_at, t.started_at,
                t.finished_at, t.result, orjson.dumps(t.errors) if t.errors else None,
                key, t.timeout, t.visibility_timeout, t.worker, t.lease_token,
                t.lease_expires_at,
            )
        )
        results[i] = EnqueueResult(t, True)
        changes.append(Change(t.id, t.queue, t.name, t.state, "enqueue"))
    try:
        conn.executemany(_INSERT, rows)
    except sqlite3.IntegrityError:
        # Only a task id can collide here (keys were looked up above).
        raise Conflict("a task with this id already exists; enqueue again") from None
    return results  # type: ignore[return-value]


def _op_lease(
    conn: sqlite3.Connection, changes: list, queue: str, limit: int, worker: str, now: float
) -> list[Task]:
    # The paused flag is read in the same transaction as the lease, so a
    # pause or resume is never seen half-way (no cached copy to go stale).
    if conn.execute("SELECT 1 FROM queues WHERE name = ? AND paused", (queue,)).fetchone():
        return []
    rows = conn.execute(
        f"UPDATE tasks SET state = 'processing', lease_token = lower(hex(randomblob(8))), "
        f"lease_expires_at = ? + visibility_timeout, started_at = ?, worker = ? "
        f"WHERE seq IN (SELECT seq FROM tasks WHERE state = 'pending' AND queue = ? "
        f"ORDER BY priority DESC, seq LIMIT ?) RETURNING priority, seq, {TASK_COLUMNS}",
        (now, now, worker, queue, limit),
    ).fetchall()
    # RETURNING comes in no promised order; hand the tasks out in lease order.
    rows.sort(key=lambda r: (-r[0], r[1]))
    tasks = [_task(r[2:]) for r in rows]
    changes.extend(Change(t.id, t.queue, t.name, "processing", "lease") for t in tasks)
    return tasks


def _op_extend(
    conn: sqlite3.Connection, changes: list, leases: Sequence[tuple[str, str]], now: float
) -> list[bool]:
    sql = (
        "UPDATE tasks SET lease_expires_at = ? + visibility_timeout "
        "WHERE id = ? AND lease_token = ? AND state = 'processing'"
    )
    return [conn.execute(sql, (now, tid, token)).rowcount == 1 for tid, token in leases]


def _append_error(conn: sqlite3.Connection, task_id: str, error: dict) -> bytes:
    row = conn.execute("SELECT errors FROM tasks WHERE id = ?", (task_id,)).fetchone()
    history = orjson.loads(row[0]) if row and row[0] else []
    history.append(error)
    return orjson.dumps(history[-ERROR_HISTORY:])


_COMPLETE = (
    "UPDATE tasks SET state = 'completed', result = ?, finished_at = ?, attempts = attempts + 1, "
    "lease_token = NULL, lease_expires_at = NULL "
    "WHERE id = ? AND lease_token = ? AND state = 'processing' RETURNING queue, name"
)
_RELEASE = (
    "UPDATE tasks SET state = 'pending', lease_token = NULL, lease_expires_at = NULL, "
    "worker = NULL WHERE id = ? AND lease_token = ? AND state = 'processing' "
    "RETURNING queue, name"
)
_FAIL_RETRY = (
    "UPDATE tasks SET state = 'scheduled', run_at = ?, errors = ?, attempts = attempts + 1, "
    "lease_token = NULL, lease_expires_at = NULL, worker = NULL "
    "WHERE id = ? AND lease_token = ? AND state = 'processing' RETURNING queue, name"
)
_FAIL_DEAD = (
    "UPDATE tasks SET state = 'failed', finished_at = ?, errors = ?, attempts = attempts + 1, "
    "lease_token = NULL, lease_expires_at = NULL "
    "WHERE id = ? AND lease_token = ? AND state = 'processing' RETURNING queue, name"
)


def _op_settle(
    conn: sqlite3.Connection, changes: list, outcomes: Sequence[Outcome], now: float
) -> list[bool]:
    accepted = []
    for o in outcomes:
        if o.kind == "complete":
            row = conn.execute(_COMPLETE, (o.result, now, o.task_id, o.token)).fetchone()
            state = "completed"
        elif o.kind == "release":
            row = conn.execute(_RELEASE, (o.task_id, o.token)).fetchone()
            state = "pending"
        else:
            errors = _append_error(conn, o.task_id, o.error or {})
            if o.retry_at is not None:
                row = conn.execute(_FAIL_RETRY, (o.retry_at, errors, o.task_id, o.token)).fetchone()
                state = "scheduled"
            else:
                row = conn.execute(_FAIL_DEAD, (now, errors, o.task_id, o.token)).fetchone()
                state = "failed"
        if row is None:
            accepted.append(False)
            continue
        accepted.append(True)
        changes.append(Change(o.task_id, row[0], row[1], state, "settle"))
    return accepted


def _op_reclaim(
    conn: sqlite3.Connection, changes: list, where: str, params: tuple, now: float, limit: int
) -> list[Task]:
    rows = conn.execute(
        f"{_SELECT} WHERE state = 'processing' AND {where} ORDER BY lease_expires_at LIMIT ?",
        (*params, limit),
    ).fetchall()
    out = []
    for row in rows:
        t = _task(row)
        attempts = t.attempts + 1
        error = make_error(
            "lost",
            f"the lease of worker {t.worker} expired before the task was settled",
            attempts,
            now,
        )
        history = orjson.dumps([*t.errors, error][-ERROR_HISTORY:])
        if attempts >= t.max_attempts:
            state, finished = "failed", now
        else:
            state, finished = "pending", None
        conn.execute(
            "UPDATE tasks SET state = ?, attempts = ?, errors = ?, finished_at = ?, "
            "lease_token = NULL, lease_expires_at = NULL, worker = NULL WHERE id = ?",
            (state, attempts, history, finished, t.id),
        )
        changes.append(Change(t.id, t.queue, t.name, state, "reclaim"))
        t.state, t.attempts, t.finished_at = state, attempts, finished
        t.errors = [*t.errors, error][-ERROR_HISTORY:]
        t.lease_token = t.lease_expires_at = t.worker = None
        out.append(t)
    return out


def _op_promote(conn: sqlite3.Connection, changes: list, now: float, limit: int) -> int:
    rows = conn.execute(
        "UPDATE tasks SET state = 'pending' WHERE seq IN (SELECT seq FROM tasks "
        "WHERE state = 'scheduled' AND run_at <= ? ORDER BY run_at LIMIT ?) "
        "RETURNING id, queue, name",
        (now, limit),
    ).fetchall()
    changes.extend(Change(r[0], r[1], r[2], "pending", "promote") for r in rows)
    return len(rows)


def _op_next_run_at(conn: sqlite3.Connection, changes: list) -> float | None:
    return conn.execute("SELECT min(run_at) FROM tasks WHERE state = 'scheduled'").fetchone()[0]


def _op_expire(
    conn: sqlite3.Connection, changes: list, state: str, before: float, limit: int
) -> int:
    rows = conn.execute(
        "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE state = ? "
        "AND finished_at < ? ORDER BY finished_at LIMIT ?) RETURNING id, queue, name",
        (state, before, limit),
    ).fetchall()
    changes.extend(Change(r[0], r[1], r[2], DELETED, "expire") for r in rows)
    return len(rows)


def _op_get(conn: sqlite3.Connection, changes: list, task_id: str) -> Task | None:
    return _task_or_none(conn.execute(f"{_SELECT} WHERE id = ?", (task_id,)).fetchone())


def _op_list(
    conn: sqlite3.Connection, changes: list, state: str | None, queue: str | None,
    name: str | None, limit: int, before: int | None,
) -> Page:
    # With a state (or no filter at all) one index walk gives the page in
    # order. With only a queue or a name, walk the (x, state, seq) index once
    # per state and merge: still O(page), never a scan of every task.
    states = [state] if state is not None else (list(STATES) if (queue or name) else [None])
    rows: list = []
    for st in states:
        where, params = [], []
        for column, value in (("state", st), ("queue", queue), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows.extend(
            conn.execute(
                f"SELECT seq, {TASK_COLUMNS} FROM tasks {clause} ORDER BY seq DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        )
    rows.sort(key=lambda r: r[0], reverse=True)
    page = rows[:limit]
    next_cursor = str(page[-1][0]) if len(rows) > limit else None
    return Page([_task(r[1:]) for r in page], next_cursor)


def _load(conn: sqlite3.Connection, task_id: str) -> Task:
    task = _task_or_none(conn.execute(f"{_SELECT} WHERE id = ?", (task_id,)).fetchone())
    if task is None:
        raise NotFound(f"no task with id {task_id!r}")
    return task


def _op_cancel(conn: sqlite3.Connection, changes: list, task_id: str, now: float) -> Task:
    task = _load(conn, task_id)
    if task.state not in ("pending", "scheduled", "processing"):
        raise Conflict(f"task {task_id} is {task.state}; only pending, scheduled or processing tasks can be cancelled")
    row = conn.execute(
        f"UPDATE tasks SET state = 'cancelled', finished_at = ?, lease_token = NULL, "
        f"lease_expires_at = NULL WHERE id = ? RETURNING {TASK_COLUMNS}",
        (now, task_id),
    ).fetchone()
    changes.append(Change(task.id, task.queue, task.name, "cancelled", "cancel"))
    return _task(row)


_REVIVE = (
    "state = 'pending', max_attempts = attempts + attempt_budget, finished_at = NULL, "
    "run_at = NULL, result = NULL, worker = NULL, lease_token = NULL, lease_expires_at = NULL"
)


def _op_retry(conn: sqlite3.Connection, changes: list, task_id: str, now: float) -> Task:
    task = _load(conn, task_id)
    if task.state not in ("failed", "cancelled"):
        raise Conflict(f"task {task_id} is {task.state}; only failed or cancelled tasks can be retried")
    row = conn.execute(
        f"UPDATE tasks SET {_REVIVE} WHERE id = ? RETURNING {TASK_COLUMNS}", (task_id,)
    ).fetchone()
    changes.append(Change(task.id, task.queue, task.name, "pending", "retry"))
    return _task(row)


def _op_delete(conn: sqlite3.Connection, changes: list, task_id: str) -> None:
    task = _load(conn, task_id)
    if task.state == "processing":
        raise Conflict(f"task {task_id} is processing; cancel it first or wait until it ends")
    conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
    changes.append(Change(task.id, task.queue, task.name, DELETED, "delete"))


def _op_declare(conn: sqlite3.Connection, changes: list, names: list[str]) -> None:
    conn.executemany("INSERT OR IGNORE INTO queues(name) VALUES (?)", [(n,) for n in names])


def _op_queues(conn: sqlite3.Connection, changes: list, only: str | None) -> list[QueueInfo]:
    if only is None:
        declared = conn.execute("SELECT name, paused FROM queues").fetchall()
        counted = conn.execute("SELECT queue, state, n FROM queue_counts").fetchall()
    else:
        declared = conn.execute("SELECT name, paused FROM queues WHERE name = ?", (only,)).fetchall()
        counted = conn.execute(
            "SELECT queue, state, n FROM queue_counts WHERE queue = ?", (only,)
        ).fetchall()
    infos: dict[str, QueueInfo] = {}
    for name, paused in declared:
        infos[name] = QueueInfo(name=name, paused=bool(paused), counts=zero_counts())
    for queue, state, n in counted:
        info = infos.get(queue)
        if info is None:
            info = infos[queue] = QueueInfo(name=queue, paused=False, counts=zero_counts())
        info.counts[state] = n
    return [infos[k] for k in sorted(infos)]


def _op_paused(conn: sqlite3.Connection, changes: list) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM queues WHERE paused")}


def _op_set_paused(conn: sqlite3.Connection, changes: list, name: str, paused: bool) -> None:
    conn.execute(
        "INSERT INTO queues(name, paused) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET paused = excluded.paused",
        (name, int(paused)),
    )
    changes.append(QueueChange(name, "paused" if paused else "resumed"))


def _op_purge(conn: sqlite3.Connection, changes: list, queue: str, state: str, limit: int) -> int:
    rows = conn.execute(
        "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE queue = ? AND state = ? "
        "LIMIT ?) RETURNING id, name",
        (queue, state, limit),
    ).fetchall()
    changes.extend(Change(r[0], queue, r[1], DELETED, "purge") for r in rows)
    if rows:
        changes.append(QueueChange(queue, "purged"))
    return len(rows)


def _op_redrive(conn: sqlite3.Connection, changes: list, queue: str, now: float, limit: int) -> int:
    rows = conn.execute(
        f"UPDATE tasks SET {_REVIVE} WHERE seq IN (SELECT seq FROM tasks "
        "WHERE queue = ? AND state = 'failed' LIMIT ?) RETURNING id, name",
        (queue, limit),
    ).fetchall()
    changes.extend(Change(r[0], queue, r[1], "pending", "redrive") for r in rows)
    return len(rows)


def _op_register(
    conn: sqlite3.Connection, changes: list, worker_id: str, info: bytes, expires_at: float
) -> None:
    conn.execute(
        "INSERT INTO workers(id, info, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at",
        (worker_id, info, expires_at),
    )


def _op_unregister(conn: sqlite3.Connection, changes: list, worker_id: str) -> None:
    conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))


def _op_workers(conn: sqlite3.Connection, changes: list, now: float) -> list[bytes]:
    return [r[0] for r in conn.execute(
        "SELECT info FROM workers WHERE expires_at > ? ORDER BY id", (now,)
    )]
