"""The operations of the SQLite store, each run on the writer or reader thread.

Every function takes the thread's connection and a list to which it appends
the change events it causes (emitted only if the group commits), then its
own arguments. Write operations run inside the group's transaction and a
savepoint of their own, so raising undoes exactly that operation.

Counts per queue and state (``queue_counts``) are adjusted by each operation
once per batch through ``_bump``, in the same transaction as the rows they
count; the tests compare them with the stored tasks after every kind of
operation.

The operations that run tasks (lease, extend, settle, progress) are in
consume.py, the turns over fair groups in groups.py.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from tqd.errors import Conflict, LimitsChanged, NotFound
from tqd.models import (
    DELETED,
    ERROR_HISTORY,
    NO_LIMITS,
    STATES,
    Change,
    Firing,
    QueueChange,
    QueueInfo,
    QueueLimits,
    Task,
    make_error,
    zero_counts,
)
from tqd.storage.base import EnqueueResult, Page
from tqd.storage.sqlite.groups import (
    REJOIN,
    heads_after_enqueue,
    heads_after_removal,
)
from tqd.storage.sqlite.schema import TASK_COLUMNS
from tqd.storage.sqlite.threads import mergeable

Conn = sqlite3.Connection
Deltas = Counter  # (queue, state) -> change in the count

_SELECT = f"SELECT {TASK_COLUMNS} FROM tasks"
#: SET clause for a task that leaves processing: its lease is gone.
CLEAR_LEASE = "lease_token = NULL, lease_expires_at = NULL"
_ERRORS_COL = 14  # position of ``errors`` in TASK_COLUMNS


def task_from_row(row: Sequence[Any]) -> Task:
    """A Task from a row of TASK_COLUMNS."""
    errors = row[_ERRORS_COL]
    if errors is None:
        return Task(*row[:_ERRORS_COL], [], *row[_ERRORS_COL + 1 :])
    return Task(*row[:_ERRORS_COL], orjson.loads(errors), *row[_ERRORS_COL + 1 :])


def _task_or_none(row: Sequence[Any] | None) -> Task | None:
    return None if row is None else task_from_row(row)


def _load(conn: Conn, task_id: str) -> Task:
    task = _task_or_none(conn.execute(f"{_SELECT} WHERE id = ?", (task_id,)).fetchone())
    if task is None:
        raise NotFound(f"no task with id {task_id!r}")
    return task


@functools.lru_cache(maxsize=64)
def _bump_sql(rows: int) -> str:
    """The upsert adding to ``rows`` (queue, state) counts in one statement."""
    values = ", ".join(["(?, ?, ?)"] * rows)
    return (f"INSERT INTO queue_counts(queue, state, n) VALUES {values} "
            "ON CONFLICT(queue, state) DO UPDATE SET n = n + excluded.n")


#: Most counts one _bump statement adds to (a batch over many queues takes several).
_BUMP_ROWS = 64


def _bump(conn: Conn, deltas: Deltas) -> None:
    # One statement, not an executemany: the writer thread lets go of the GIL
    # around each row executemany binds (see _insert_rows), and a lease or
    # settle moves two counts.
    args = [v for (queue, state), n in deltas.items() if n for v in (queue, state, n)]
    for i in range(0, len(args), 3 * _BUMP_ROWS):
        chunk = args[i : i + 3 * _BUMP_ROWS]
        conn.execute(_bump_sql(len(chunk) // 3), chunk)


def _move(conn: Conn, queue: str, old: str, new: str, n: int = 1) -> None:
    if n:
        _bump(conn, Counter({(queue, old): -n, (queue, new): n}))


# -- producing ----------------------------------------------------------------

# The task's columns, then rejoin (set for a grouped task enqueued in a state
# other than pending: it joins its group's pending tasks later, see groups.py).
_COLUMN_NAMES = (*(c.strip() for c in TASK_COLUMNS.split(",")), "rejoin")


#: Columns holding encoded JSON as BLOB; rows carry them as text (see _insert_rows).
_BLOB_COLUMNS = frozenset({"payload", "result", "errors", "progress"})


@functools.lru_cache(maxsize=128)
def _insert_sql(present: tuple[bool, ...]) -> str:
    """One INSERT of every row of a JSON array of rows, each row an array of
    the values of the columns marked present (the others are left NULL)."""
    names = [n for n, p in zip(_COLUMN_NAMES, present, strict=True) if p]
    values = []
    for j, name in enumerate(names):
        value = f"json_extract(value, '$[{j}]')"
        values.append(f"CAST({value} AS BLOB)" if name in _BLOB_COLUMNS else value)
    # json_each yields the array in order and INSERT … SELECT inserts rows as
    # they come, so seq follows the array (an ORDER BY key would add a sort).
    return f"INSERT INTO tasks ({', '.join(names)}) SELECT {', '.join(values)} FROM json_each(?1)"


def _insert_rows(conn: Conn, rows: list[tuple]) -> None:
    """Insert ``rows`` (values of every task column, then rejoin; encoded JSON
    as str, not bytes) in their order.

    The rows go to SQLite as one JSON array and one statement, so the
    writer thread lets go of the GIL once for the whole batch. executemany
    lets go of it around each row and must win it back from the event loop
    each time: with the loop busy, each row waited up to the interpreter's
    switch interval (5 ms), and a batch of 1,000 rows took 1,000 such waits.
    Times survive the trip exactly (SQLite's text-to-double conversion
    round-trips Python's float repr). A row names only the columns it sets
    (a new task leaves most of them NULL, and each extracted column costs);
    consecutive rows with the same columns set (nearly always the whole
    batch) share one statement, so the insertion order (seq, hence FIFO) is
    kept.
    """
    start = 0
    shape = None
    for i, row in enumerate(rows):
        present = tuple(v is not None for v in row)
        if present != shape:
            if shape is not None:
                _insert_run(conn, shape, rows[start:i])
            shape, start = present, i
    if shape is not None:
        _insert_run(conn, shape, rows[start:])


def _insert_run(conn: Conn, present: tuple[bool, ...], rows: list[tuple]) -> None:
    # Bound as text: SQLite 3.45 and later read a BLOB given to json_each as
    # its binary JSONB, not as JSON text.
    values = orjson.dumps([[v for v in row if v is not None] for row in rows]).decode()
    conn.execute(_insert_sql(present), (values,))


#: The live task holding a unique key (see Task): the newest, if several.
_UNIQUE_TWIN = (
    f"{_SELECT} WHERE queue = ? AND name = ? AND unique_key = ? "
    "AND state IN ('pending', 'scheduled', 'processing') AND unique_until > ? "
    "ORDER BY seq DESC LIMIT 1"
)
_LIVE = ("pending", "scheduled", "processing")


def op_ping(conn: Conn, changes: list) -> None:
    conn.execute("SELECT 1").fetchone()


@mergeable
def op_enqueue(conn: Conn, changes: list, tasks: Sequence[Task]) -> list[EnqueueResult]:
    results: list[EnqueueResult] = []
    rows = []
    deltas: Deltas = Counter()
    seen_keys: dict[tuple[str, str], Task] = {}
    seen_unique: dict[tuple[str, str, str], Task] = {}
    fresh: set[str] = set()  # queues given grouped pending tasks: group_heads may change
    after = 0
    for t in tasks:
        key = t.idempotency_key
        if key is not None:
            prior = seen_keys.get((t.queue, key))
            if prior is None:
                prior = _task_or_none(conn.execute(
                    f"{_SELECT} WHERE queue = ? AND idempotency_key = ?", (t.queue, key)
                ).fetchone())
            if prior is not None:
                results.append(EnqueueResult(prior, False))
                continue
        unique = None
        if t.unique_key is not None and t.state in _LIVE:
            unique = (t.queue, t.name, t.unique_key)
            twin = seen_unique.get(unique)
            if twin is None or not (twin.unique_until or 0) > t.created_at:
                twin = _task_or_none(conn.execute(_UNIQUE_TWIN, (*unique, t.created_at)).fetchone())
            if twin is not None:
                results.append(EnqueueResult(twin, False))
                continue
        if key is not None:
            seen_keys[(t.queue, key)] = t
        if unique is not None:
            seen_unique[unique] = t
        rows.append((
            t.id, t.name, t.queue, t.payload.decode(), t.priority, t.state, t.attempts,
            t.max_attempts, t.attempt_budget, t.created_at, t.run_at, t.started_at,
            t.finished_at, None if t.result is None else t.result.decode(),
            orjson.dumps(t.errors).decode() if t.errors else None,
            key, t.timeout, t.visibility_timeout, t.worker, t.lease_token, t.lease_expires_at,
            t.unique_key, t.unique_until, None if t.progress is None else t.progress.decode(),
            # "" is no group: it stands for the ungrouped tasks in the rotation.
            t.group or None,
            1 if t.group and t.state != "pending" else None,
        ))
        if t.group and t.state == "pending":
            fresh.add(t.queue)
        results.append(EnqueueResult(t, True))
        deltas[(t.queue, t.state)] += 1
        changes.append(Change(t.id, t.queue, t.name, t.state, "enqueue"))
    if fresh:
        # New rows get seqs above the largest one now.
        after = conn.execute("SELECT coalesce(max(seq), 0) FROM tasks").fetchone()[0]
    try:
        _insert_rows(conn, rows)
    except sqlite3.IntegrityError:
        # Keys were looked up above, so only a task id can collide.
        raise Conflict("a task with this id already exists; enqueue again") from None
    if fresh:
        heads_after_enqueue(conn, after, fresh)
    _bump(conn, deltas)
    return results


# -- background roles ---------------------------------------------------------


def op_reclaim(conn: Conn, changes: list, where: str, params: tuple, now: float, limit: int) -> list[Task]:
    rows = conn.execute(
        f"{_SELECT} WHERE state = 'processing' AND {where} ORDER BY lease_expires_at LIMIT ?",
        (*params, limit),
    ).fetchall()
    out = []
    deltas: Deltas = Counter()
    for row in rows:
        t = task_from_row(row)
        attempts = t.attempts + 1
        error = make_error(
            "lost", f"the lease of worker {t.worker} expired before the task was settled", attempts, now
        )
        history = [*t.errors, error][-ERROR_HISTORY:]
        state, finished = ("failed", now) if attempts >= t.max_attempts else ("pending", None)
        conn.execute(
            "UPDATE tasks SET state = ?, attempts = ?, errors = ?, finished_at = ?, "
            f"{CLEAR_LEASE}, worker = NULL, {REJOIN} WHERE id = ?",
            (state, attempts, orjson.dumps(history), finished, t.id),
        )
        deltas[(t.queue, "processing")] -= 1
        deltas[(t.queue, state)] += 1
        changes.append(Change(t.id, t.queue, t.name, state, "reclaim"))
        t.state, t.attempts, t.finished_at, t.errors = state, attempts, finished, history
        t.lease_token = t.lease_expires_at = t.worker = None
        out.append(t)
    _bump(conn, deltas)
    return out


def op_promote(conn: Conn, changes: list, now: float, limit: int) -> int:
    rows = conn.execute(
        f"UPDATE tasks SET state = 'pending', {REJOIN} WHERE seq IN (SELECT seq FROM tasks "
        "WHERE state = 'scheduled' AND run_at <= ? ORDER BY run_at LIMIT ?) "
        "RETURNING id, queue, name",
        (now, limit),
    ).fetchall()
    deltas: Deltas = Counter()
    for tid, queue, name in rows:
        deltas[(queue, "scheduled")] -= 1
        deltas[(queue, "pending")] += 1
        changes.append(Change(tid, queue, name, "pending", "promote"))
    _bump(conn, deltas)
    return len(rows)


def op_next_run_at(conn: Conn, changes: list) -> float | None:
    return conn.execute("SELECT min(run_at) FROM tasks WHERE state = 'scheduled'").fetchone()[0]


# The oldest finished tasks of one state, from the tasks_finished index.
_EXPIRE = (
    "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE state = ? "
    "AND finished_at < ? ORDER BY finished_at LIMIT ?) RETURNING id, queue, name"
)


def op_expire(conn: Conn, changes: list, state: str, before: float, limit: int) -> int:
    rows = conn.execute(_EXPIRE, (state, before, limit)).fetchall()
    deltas: Deltas = Counter()
    for tid, queue, name in rows:
        deltas[(queue, state)] -= 1
        changes.append(Change(tid, queue, name, DELETED, "expire"))
    _bump(conn, deltas)
    return len(rows)


# -- reading ------------------------------------------------------------------


def op_get(conn: Conn, changes: list, task_id: str) -> Task | None:
    return _task_or_none(conn.execute(f"{_SELECT} WHERE id = ?", (task_id,)).fetchone())


def op_list(
    conn: Conn, changes: list, state: str | None, queue: str | None, name: str | None,
    limit: int, before: int | None,
) -> Page:
    # Each walk below reads at most limit+1 rows of one index in seq order;
    # merging several walks keeps the cost proportional to the page.
    if name is not None:
        walks = [(state, queue)]  # (name, seq) index, filtered
    elif queue is not None:
        walks = [(state, queue)] if state is not None else [(s, queue) for s in STATES]
    elif state is not None:
        held = conn.execute(
            "SELECT queue FROM queue_counts WHERE state = ? AND n > 0", (state,)
        ).fetchall()
        walks = [(state, q) for (q,) in held]
    else:
        walks = [(None, None)]
    rows: list = []
    for st, q in walks:
        where, params = [], []
        for column, value in (("name", name), ("queue", q), ("state", st)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows.extend(conn.execute(
            f"SELECT seq, {TASK_COLUMNS} FROM tasks {clause} ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall())
    rows.sort(key=lambda r: r[0], reverse=True)
    page = rows[:limit]
    next_cursor = str(page[-1][0]) if len(rows) > limit else None
    return Page([task_from_row(r[1:]) for r in page], next_cursor)


# -- changing one task --------------------------------------------------------


def op_cancel(conn: Conn, changes: list, task_id: str, now: float) -> Task:
    task = _load(conn, task_id)
    if task.state not in ("pending", "scheduled", "processing"):
        raise Conflict(
            f"task {task_id} is {task.state}; only pending, scheduled or processing tasks can be cancelled"
        )
    row = conn.execute(
        f"UPDATE tasks SET state = 'cancelled', finished_at = ?, {CLEAR_LEASE}, {REJOIN} "
        f"WHERE id = ? RETURNING {TASK_COLUMNS}",
        (now, task_id),
    ).fetchone()
    if task.state == "pending" and task.group:
        heads_after_removal(conn, task.queue, [(task.group, task.priority)])
    _move(conn, task.queue, task.state, "cancelled")
    changes.append(Change(task.id, task.queue, task.name, "cancelled", "cancel"))
    return task_from_row(row)


# A revived task no longer holds its unique key (as on Redis, where the key
# is let go when the task finishes): unique_until is cleared.
_REVIVE = (
    "state = 'pending', max_attempts = attempts + attempt_budget, finished_at = NULL, "
    f"run_at = NULL, result = NULL, worker = NULL, unique_until = NULL, {CLEAR_LEASE}, {REJOIN}"
)


def op_retry(conn: Conn, changes: list, task_id: str, now: float) -> Task:
    task = _load(conn, task_id)
    if task.state not in ("failed", "cancelled"):
        raise Conflict(f"task {task_id} is {task.state}; only failed or cancelled tasks can be retried")
    row = conn.execute(
        f"UPDATE tasks SET {_REVIVE} WHERE id = ? RETURNING {TASK_COLUMNS}", (task_id,)
    ).fetchone()
    _move(conn, task.queue, task.state, "pending")
    changes.append(Change(task.id, task.queue, task.name, "pending", "retry"))
    return task_from_row(row)


def op_delete(conn: Conn, changes: list, task_id: str) -> None:
    task = _load(conn, task_id)
    if task.state == "processing":
        raise Conflict(f"task {task_id} is processing; cancel it first or wait until it ends")
    conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
    if task.state == "pending" and task.group:
        heads_after_removal(conn, task.queue, [(task.group, task.priority)])
    _bump(conn, Counter({(task.queue, task.state): -1}))
    changes.append(Change(task.id, task.queue, task.name, DELETED, "delete"))


# -- queues -------------------------------------------------------------------


def op_declare(conn: Conn, changes: list, names: list[str]) -> None:
    conn.executemany("INSERT OR IGNORE INTO queues(name) VALUES (?)", [(n,) for n in names])


_QUEUE_COLUMNS = (
    "name, paused, concurrency, rate_limit, rate_interval, rate_burst, group_concurrency, "
    "config_digest"
)


def _queue_info(row: Sequence[Any]) -> QueueInfo:
    name, paused, concurrency, rate, interval, burst, group_cap, digest = row
    limits = NO_LIMITS  # shared, for the many queues that never had limits set
    if (concurrency, rate, burst, group_cap) != (None,) * 4 or interval not in (None, 1.0):
        limits = QueueLimits(
            concurrency=concurrency, rate_limit=rate, rate_interval=interval or 1.0,
            rate_burst=burst, group_concurrency=group_cap,
        )
    return QueueInfo(
        name=name, paused=bool(paused), counts=zero_counts(), limits=limits, config_digest=digest
    )


def op_queues(conn: Conn, changes: list, only: str | None) -> list[QueueInfo]:
    if only is None:
        declared = conn.execute(f"SELECT {_QUEUE_COLUMNS} FROM queues").fetchall()
        counted = conn.execute("SELECT queue, state, n FROM queue_counts").fetchall()
    else:
        declared = conn.execute(
            f"SELECT {_QUEUE_COLUMNS} FROM queues WHERE name = ?", (only,)
        ).fetchall()
        counted = conn.execute(
            "SELECT queue, state, n FROM queue_counts WHERE queue = ?", (only,)
        ).fetchall()
    infos: dict[str, QueueInfo] = {}
    for row in declared:
        infos[row[0]] = _queue_info(row)
    for queue, state, n in counted:
        info = infos.get(queue)
        if info is None:
            info = infos[queue] = QueueInfo(name=queue, paused=False, counts=zero_counts())
        info.counts[state] = n
    return [infos[k] for k in sorted(infos)]


def op_paused(conn: Conn, changes: list) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM queues WHERE paused")}


def op_set_paused(conn: Conn, changes: list, name: str, paused: bool) -> None:
    conn.execute(
        "INSERT INTO queues(name, paused) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET paused = excluded.paused",
        (name, int(paused)),
    )
    changes.append(QueueChange(name, "paused" if paused else "resumed"))


def op_set_limits(
    conn: Conn, changes: list, name: str, limits: QueueLimits, now: float, digest: str | None,
    expected: QueueLimits | None = None,
) -> None:
    if expected is not None:
        # Compare-and-set: read in the writer's transaction, so nothing can
        # change the row between this check and the write below.
        row = conn.execute(f"SELECT {_QUEUE_COLUMNS} FROM queues WHERE name = ?", (name,)).fetchone()
        stored = NO_LIMITS if row is None else _queue_info(row).limits
        if stored != expected:
            raise LimitsChanged(f"queue {name}: its limits changed meanwhile")
    # The bucket starts full: NULL tokens read as full, from now on.
    conn.execute(
        "INSERT INTO queues(name, concurrency, rate_limit, rate_interval, rate_burst, "
        "group_concurrency, rate_tokens, rate_at, config_digest) "
        "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?) ON CONFLICT(name) DO UPDATE SET "
        "concurrency = excluded.concurrency, rate_limit = excluded.rate_limit, "
        "rate_interval = excluded.rate_interval, rate_burst = excluded.rate_burst, "
        "group_concurrency = excluded.group_concurrency, rate_tokens = NULL, "
        "rate_at = excluded.rate_at, "
        "config_digest = coalesce(excluded.config_digest, queues.config_digest)",
        (name, limits.concurrency, limits.rate_limit, float(limits.rate_interval),
         limits.rate_burst, limits.group_concurrency, now, digest),
    )
    changes.append(QueueChange(name, "limits"))


def op_purge(conn: Conn, changes: list, queue: str, state: str, limit: int) -> int:
    rows = conn.execute(
        "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE queue = ? AND state = ? "
        "LIMIT ?) RETURNING id, name, grp, priority",
        (queue, state, limit),
    ).fetchall()
    if state == "pending":
        heads_after_removal(conn, queue, {(r[2], r[3]) for r in rows if r[2] is not None})
    if rows:
        _bump(conn, Counter({(queue, state): -len(rows)}))
        changes.extend([Change(r[0], queue, r[1], DELETED, "purge") for r in rows])
        changes.append(QueueChange(queue, "purged"))
    return len(rows)


def op_redrive(conn: Conn, changes: list, queue: str, now: float, limit: int) -> int:
    rows = conn.execute(
        f"UPDATE tasks SET {_REVIVE} WHERE seq IN (SELECT seq FROM tasks "
        "WHERE queue = ? AND state = 'failed' LIMIT ?) RETURNING id, name",
        (queue, limit),
    ).fetchall()
    _move(conn, queue, "failed", "pending", len(rows))
    changes.extend([Change(r[0], queue, r[1], "pending", "redrive") for r in rows])
    return len(rows)


# -- processes ----------------------------------------------------------------


def op_register(conn: Conn, changes: list, worker_id: str, info: bytes, expires_at: float) -> None:
    conn.execute(
        "INSERT INTO workers(id, info, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at",
        (worker_id, info, expires_at),
    )


def op_unregister(conn: Conn, changes: list, worker_id: str) -> None:
    conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))


def op_workers(conn: Conn, changes: list, now: float) -> list[bytes]:
    return [r[0] for r in conn.execute(
        "SELECT info FROM workers WHERE expires_at > ? ORDER BY id", (now,)
    )]


# -- cron ---------------------------------------------------------------------


def op_claim_firing(conn: Conn, changes: list, name: str, instant: float, now: float) -> bool:
    cursor = conn.execute(
        "INSERT INTO cron_firings(name, instant, fired_at) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET instant = excluded.instant, fired_at = excluded.fired_at "
        "WHERE excluded.instant > cron_firings.instant",
        (name, instant, now),
    )
    return cursor.rowcount == 1


def op_firings(conn: Conn, changes: list) -> dict[str, Firing]:
    return {
        name: Firing(instant, fired_at)
        for name, instant, fired_at in conn.execute("SELECT name, instant, fired_at FROM cron_firings")
    }
