"""The operations of the SQLite store, each run on the writer or reader thread.

Every function takes the thread's connection and a list to which it appends
the change events it causes (emitted only if the group commits), then its
own arguments. Write operations run inside the group's transaction and a
savepoint of their own, so raising undoes exactly that operation.

Counts per queue and state (``queue_counts``) are adjusted by each operation
once per batch through ``_bump``, in the same transaction as the rows they
count; the tests compare them with the stored tasks after every kind of
operation.
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
    Outcome,
    ProgressReport,
    QueueChange,
    QueueInfo,
    QueueLimits,
    Task,
    make_error,
    progress_json,
    zero_counts,
)
from tqd.storage.base import EnqueueResult, Leased, Page
from tqd.storage.sqlite.groups import (
    FIRST_TURN,
    REJOIN,
    heads_after_enqueue,
    heads_after_lease,
    heads_after_removal,
    plan_lease,
    ring_order,
)
from tqd.storage.sqlite.schema import TASK_COLUMNS
from tqd.storage.sqlite.threads import mergeable

Conn = sqlite3.Connection
Deltas = Counter  # (queue, state) -> change in the count

_SELECT = f"SELECT {TASK_COLUMNS} FROM tasks"
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


_BUMP = (
    "INSERT INTO queue_counts(queue, state, n) VALUES (?, ?, ?) "
    "ON CONFLICT(queue, state) DO UPDATE SET n = n + excluded.n"
)


def _bump(conn: Conn, deltas: Deltas) -> None:
    rows = [(queue, state, n) for (queue, state), n in deltas.items() if n]
    if rows:
        conn.executemany(_BUMP, rows)


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
    values = orjson.dumps([[v for v in row if v is not None] for row in rows])
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
    fresh = False  # a grouped task enqueued pending: group_heads may change
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
        fresh = fresh or bool(t.group and t.state == "pending")
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
        heads_after_enqueue(conn, after)
    _bump(conn, deltas)
    return results


# -- consuming ----------------------------------------------------------------


# Every lease first reads, in one statement: the queue's row (paused, limits,
# rate bucket, rotation cursor; NULLs when it has none), whether it holds
# grouped pending tasks, fresh ones (1, a seek in group_heads) or rejoined
# ones (2, a seek in tasks_group_rejoin; ungrouped tasks enter neither), and
# its pending and processing counts. An unlimited queue without groups then
# leases with no further reads; a limited or grouped one needs none either
# (each statement costs the writer a wait for the GIL; see _insert_rows).
_QUEUE_STATE = (
    "SELECT q.paused, q.concurrency, q.rate_limit, q.rate_interval, q.rate_burst, "
    "q.group_concurrency, q.rate_tokens, q.rate_at, q.last_group, "
    "EXISTS (SELECT 1 FROM group_heads WHERE queue = ?1) + 2 * EXISTS (SELECT 1 FROM tasks "
    "WHERE queue = ?1 AND state = 'pending' AND grp IS NOT NULL AND rejoin = 1), "
    "(SELECT n FROM queue_counts WHERE queue = ?1 AND state = 'pending'), "
    "(SELECT n FROM queue_counts WHERE queue = ?1 AND state = 'processing') "
    "FROM (SELECT 1) LEFT JOIN queues q ON q.name = ?1"
)
# After a lease: the rotation cursor and the rate bucket in one write (the
# queue has no row yet when it has groups but never had settings).
_QUEUE_AFTER_LEASE = (
    "INSERT INTO queues(name, last_group, rate_tokens, rate_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET last_group = excluded.last_group, "
    "rate_tokens = excluded.rate_tokens, rate_at = excluded.rate_at"
)
_LEASE_SET = (
    "UPDATE tasks SET state = 'processing', lease_token = lower(hex(randomblob(8))), "
    "lease_expires_at = ? + coalesce(?, visibility_timeout), started_at = ?, worker = ? "
)
# Ungrouped pending tasks in lease order (the partial tasks_pending index).
_LEASE_PLAIN = (
    _LEASE_SET + "WHERE seq IN (SELECT seq FROM tasks WHERE state = 'pending' AND queue = ? "
    f"AND grp IS NULL ORDER BY priority DESC, seq LIMIT ?) RETURNING priority, seq, {TASK_COLUMNS}"
)
# The tasks a grouped lease chose (groups.plan_lease), by seq in the JSON
# list ?6: one rowid lookup each, in one statement. (?5, the queue, is not
# needed: the seqs were read in this transaction.)
_LEASE_SEQS = (
    _LEASE_SET + "WHERE seq IN (SELECT value FROM json_each(?6)) AND state = 'pending' "
    f"RETURNING seq, rejoin, {TASK_COLUMNS}"
)
#: Where a leased row (seq, rejoin, TASK_COLUMNS) holds the group.
_GRP = 2 + TASK_COLUMNS.split(", ").index("grp")
# The first turn over the groups (groups.FIRST_TURN).
_LEASE_FIRST_TURN = (
    _LEASE_SET + f"WHERE seq IN ({FIRST_TURN}) AND state = 'pending' RETURNING seq, rejoin, {TASK_COLUMNS}"
)
#: Slack when counting whole tokens, so 0.9999999 tokens from float steps count as 1.
_TOKEN_EPS = 1e-9


def op_lease(
    conn: Conn, changes: list, queue: str, limit: int, worker: str, now: float,
    visibility: float | None = None,
) -> Leased:
    # The queue row (paused, limits, bucket, rotation) is read in the same
    # transaction as the lease, so every process sees one consistent state
    # and a limit holds across them (no cached copy to go stale).
    (paused, concurrency, rate, interval, burst, group_cap, tokens, rate_at, last_group,
     grouped, pending, processing) = conn.execute(_QUEUE_STATE, (queue,)).fetchone()
    if paused:
        return Leased()
    lease_args = (now, visibility, now, worker, queue)
    if concurrency is None and rate is None and not grouped:
        return Leased(_lease_plain(conn, changes, queue, limit, lease_args))

    pending = pending or 0
    processing = processing or 0
    allowed, binding = limit, None
    if concurrency is not None:
        room = max(0, concurrency - processing)
        if room < allowed:
            allowed, binding = room, "concurrency"
    level = per_second = 0.0
    if rate is not None:
        capacity = burst if burst is not None else rate
        per_second = rate / (interval or 1.0)
        level = float(capacity) if tokens is None else min(
            float(capacity), tokens + max(0.0, now - rate_at) * per_second
        )
        whole = int(level + _TOKEN_EPS)
        if whole < allowed:  # on a tie concurrency stays the reason: it frees slowest
            allowed, binding = whole, "rate"

    blocked = False
    tasks: list[Task] = []
    served = last_group
    if allowed > 0:
        if grouped:
            if group_cap is not None and processing + allowed <= group_cap:
                # No group can reach its cap in this lease (a group's
                # processing tasks are at most the queue's): skip counting
                # each group's.
                group_cap = None
            tasks, blocked, served = _lease_groups(
                conn, changes, queue, allowed, group_cap, last_group, lease_args, grouped == 1
            )
        else:
            tasks = _lease_plain(conn, changes, queue, allowed, lease_args)
    if tasks and (rate is not None or served != last_group):
        if rate is not None:
            tokens = level = max(0.0, level - len(tasks))
            # A clock behind the last lease's (another host) must not refill twice.
            rate_at = now if rate_at is None else max(now, rate_at)
        conn.execute(_QUEUE_AFTER_LEASE, (queue, served, tokens, rate_at))
    leased = Leased(tasks)
    if len(tasks) < limit:
        if binding is not None and len(tasks) == allowed and pending > len(tasks):
            leased.limited = binding
        elif blocked:
            leased.limited = "group"
        if leased.limited == "rate":
            fraction = max(0.0, level - int(level + _TOKEN_EPS))
            leased.retry_in = (1.0 - fraction) / per_second
    return leased


def _lease_plain(conn: Conn, changes: list, queue: str, n: int, lease_args: tuple) -> list[Task]:
    """Lease up to ``n`` ungrouped tasks in priority, then FIFO order."""
    rows = conn.execute(_LEASE_PLAIN, (*lease_args, n)).fetchall()
    if not rows:
        return []
    # RETURNING comes in no promised order; hand the tasks out in lease order.
    rows.sort(key=lambda r: (-r[0], r[1]))
    tasks = [task_from_row(r[2:]) for r in rows]
    _move(conn, queue, "pending", "processing", len(tasks))
    changes.extend([Change(t.id, queue, t.name, "processing", "lease") for t in tasks])
    return tasks


def _lease_groups(
    conn: Conn, changes: list, queue: str, n: int, group_cap: int | None, last: str | None,
    lease_args: tuple, fresh_only: bool,
) -> tuple[list[Task], bool, str | None]:
    """Lease up to ``n`` tasks in turns over the groups (see Storage.lease);
    return them in lease order, whether group_concurrency held a group with
    pending tasks back, and the last group served (the caller stores it)."""
    rows: list = []
    blocked = False
    served = last
    if fresh_only and group_cap is None:
        # The usual case in one statement: the first turn (groups.FIRST_TURN).
        rows = conn.execute(_LEASE_FIRST_TURN, (*lease_args, last, n)).fetchall()
        key = ring_order(last)
        rows.sort(key=lambda r: key(r[_GRP] or ""))
        _heads_after_lease(conn, queue, rows, one_per_group=True)
        if rows:
            served = rows[-1][_GRP] or ""
        # A turn that fell short of n took every group once: the lease goes
        # on with the next turns, from the last group served.
        n = n - len(rows) if rows else 0
    if n > 0:
        plan = plan_lease(conn, queue, n, group_cap, served)
        blocked = plan.blocked
        if plan.seqs:
            more = conn.execute(_LEASE_SEQS, (*lease_args, orjson.dumps(plan.seqs).decode())).fetchall()
            # RETURNING comes in no promised order; hand the tasks out as chosen.
            order = {seq: i for i, seq in enumerate(plan.seqs)}
            more.sort(key=lambda r: order[r[0]])
            _heads_after_lease(conn, queue, more)
            rows += more
            served = plan.served
    if not rows:
        return [], blocked, last
    tasks = [task_from_row(r[2:]) for r in rows]
    _move(conn, queue, "pending", "processing", len(tasks))
    changes.extend([Change(t.id, queue, t.name, "processing", "lease") for t in tasks])
    return tasks, blocked, served


def _heads_after_lease(conn: Conn, queue: str, rows: list, one_per_group: bool = False) -> None:
    """The fresh tasks in these leased rows (seq, rejoin, TASK_COLUMNS) were
    the first of their levels: move the heads on."""
    fresh = [row for row in rows if row[_GRP] and row[1] is None]
    heads_after_lease(conn, queue, [row[_GRP] for row in fresh], [row[0] for row in fresh],
                      one_per_group)


def op_extend(
    conn: Conn, changes: list, leases: Sequence[tuple[str, str]], now: float,
    visibility: float | None = None,
) -> list[bool]:
    sql = (
        "UPDATE tasks SET lease_expires_at = ? + coalesce(?, visibility_timeout) "
        "WHERE id = ? AND lease_token = ? AND state = 'processing'"
    )
    return [
        conn.execute(sql, (now, visibility, tid, token)).rowcount == 1 for tid, token in leases
    ]


_GUARD = "WHERE id = ? AND lease_token = ? AND state = 'processing'"
_CLEAR_LEASE = "lease_token = NULL, lease_expires_at = NULL"
_COMPLETE = (
    "UPDATE tasks SET state = 'completed', result = ?, finished_at = ?, attempts = attempts + 1, "
    f"started_at = coalesce(?, started_at), {_CLEAR_LEASE} {_GUARD}"
)
# _COMPLETE without a result and with started_at kept.
_COMPLETE_BARE = (
    "UPDATE tasks SET state = 'completed', result = NULL, finished_at = ?, "
    f"attempts = attempts + 1, {_CLEAR_LEASE} {_GUARD}"
)
_RELEASE = f"UPDATE tasks SET state = 'pending', {_CLEAR_LEASE}, worker = NULL, {REJOIN} {_GUARD}"
_FAIL_RETRY = (
    "UPDATE tasks SET state = 'scheduled', run_at = ?, errors = ?, attempts = attempts + 1, "
    f"started_at = coalesce(?, started_at), {_CLEAR_LEASE}, worker = NULL {_GUARD}"
)
_FAIL_DEAD = (
    "UPDATE tasks SET state = 'failed', finished_at = ?, errors = ?, attempts = attempts + 1, "
    f"started_at = coalesce(?, started_at), {_CLEAR_LEASE} {_GUARD}"
)


def op_settle(conn: Conn, changes: list, outcomes: Sequence[Outcome], now: float) -> list[bool]:
    accepted = [False] * len(outcomes)
    deltas: Deltas = Counter()
    slow = list(range(len(outcomes)))
    # Fast path: completions whose queue and name the caller knows go in one
    # executemany. If any token turns out stale the row counts disagree; then
    # undo it and take the careful path, one statement per outcome.
    fast = [i for i, o in enumerate(outcomes) if o.kind == "complete" and o.queue and o.name]
    if fast:
        conn.execute("SAVEPOINT settle_fast")
        if all(outcomes[i].result is None and outcomes[i].started_at is None for i in fast):
            # Handlers that return nothing (the common case): bind no None,
            # which Python 3.11's sqlite3 passes through its adapter lookup,
            # several times the cost of binding an int or str.
            cursor = conn.executemany(
                _COMPLETE_BARE, [(now, o.task_id, o.token) for o in (outcomes[i] for i in fast)]
            )
        else:
            cursor = conn.executemany(
                _COMPLETE,
                [(o.result, now, o.started_at, o.task_id, o.token)
                 for o in (outcomes[i] for i in fast)],
            )
        if cursor.rowcount == len(fast):
            conn.execute("RELEASE settle_fast")
            for i in fast:
                o = outcomes[i]
                accepted[i] = True
                deltas[(o.queue, "processing")] -= 1
                deltas[(o.queue, "completed")] += 1
                changes.append(Change(o.task_id, o.queue, o.name, "completed", "settle"))
            done = set(fast)
            slow = [i for i in slow if i not in done]
        else:
            conn.execute("ROLLBACK TO settle_fast")
            conn.execute("RELEASE settle_fast")
    for i in slow:
        o = outcomes[i]
        row, state = _settle_one(conn, o, now)
        if row is not None:
            accepted[i] = True
            deltas[(row[0], "processing")] -= 1
            deltas[(row[0], state)] += 1
            changes.append(Change(o.task_id, row[0], row[1], state, "settle"))
    _bump(conn, deltas)
    return accepted


def _settle_one(conn: Conn, o: Outcome, now: float) -> tuple[Any, str]:
    returning = " RETURNING queue, name"
    if o.kind == "complete":
        row = conn.execute(_COMPLETE + returning, (o.result, now, o.started_at, o.task_id, o.token))
        return row.fetchone(), "completed"
    if o.kind == "release":
        return conn.execute(_RELEASE + returning, (o.task_id, o.token)).fetchone(), "pending"
    errors = _append_error(conn, o.task_id, o.error or {})
    if o.retry_at is not None:
        row = conn.execute(
            _FAIL_RETRY + returning, (o.retry_at, errors, o.started_at, o.task_id, o.token)
        )
        return row.fetchone(), "scheduled"
    row = conn.execute(_FAIL_DEAD + returning, (now, errors, o.started_at, o.task_id, o.token))
    return row.fetchone(), "failed"


def _append_error(conn: Conn, task_id: str, error: dict) -> bytes:
    row = conn.execute("SELECT errors FROM tasks WHERE id = ?", (task_id,)).fetchone()
    history = orjson.loads(row[0]) if row and row[0] else []
    history.append(error)
    return orjson.dumps(history[-ERROR_HISTORY:])


def op_progress(conn: Conn, changes: list, reports: Sequence[ProgressReport]) -> list[bool]:
    sql = f"UPDATE tasks SET progress = ? {_GUARD}"
    return [
        conn.execute(sql, (progress_json(r), r.task_id, r.token)).rowcount == 1 for r in reports
    ]


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
            f"{_CLEAR_LEASE}, worker = NULL, {REJOIN} WHERE id = ?",
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
        f"UPDATE tasks SET state = 'cancelled', finished_at = ?, {_CLEAR_LEASE}, {REJOIN} "
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
    f"run_at = NULL, result = NULL, worker = NULL, unique_until = NULL, {_CLEAR_LEASE}, {REJOIN}"
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
