"""The operations of the SQLite store that run tasks: lease (with queue
limits and fair groups), extend, settle and progress. Like those of ops.py,
each runs on the writer thread inside the group's transaction and a
savepoint of its own, and appends the change events it causes.

They share one concern that shapes how they are written: the writer thread
lets go of the GIL around every statement (and every row it fetches or
executemany binds) and must win it back from the busy event loop, so they
are written in as few statements per batch as the work allows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from tqd.models import ERROR_HISTORY, Change, Outcome, ProgressReport, Task, progress_json
from tqd.storage.base import Leased
from tqd.storage.sqlite.groups import REJOIN, heads_after_lease, plan_lease
from tqd.storage.sqlite.ops import CLEAR_LEASE, Conn, Deltas, _bump, _move, task_from_row
from tqd.storage.sqlite.schema import TASK_COLUMNS

# The seq of the first ungrouped pending task of queue ?1 in lease order.
_FIRST_UNGROUPED = (
    "SELECT seq FROM tasks WHERE queue = ?1 AND state = 'pending' AND grp IS NULL "
    "ORDER BY priority DESC, seq LIMIT 1"
)
# The first ?2 of them, as one JSON list of [-priority, seq] (one row: one
# GIL hand-off for the writer).
_UNGROUPED_FIRST = (
    "SELECT json_group_array(json_array(-priority, seq)) FROM (SELECT priority, seq FROM tasks "
    "WHERE queue = ?1 AND state = 'pending' AND grp IS NULL ORDER BY priority DESC, seq LIMIT ?2)"
)
# Every lease first reads, in one statement: the queue's row (paused, limits,
# rate bucket, rotation cursor; NULLs when it has none), whether it holds
# grouped pending tasks, fresh ones (1, a seek in group_heads) or rejoined
# ones (2, a seek in tasks_group_rejoin; ungrouped tasks enter neither), and
# its pending and processing counts, and when it has groups its first
# ungrouped task (a place in the first turn). An unlimited queue without
# groups then leases with no further reads; a limited or grouped one needs
# none either (each statement costs the writer a wait for the GIL; see
# ops._insert_rows).
_QUEUE_STATE = (
    "SELECT q.paused, q.concurrency, q.rate_limit, q.rate_interval, q.rate_burst, "
    "q.group_concurrency, q.rate_tokens, q.rate_at, q.last_group, "
    "h.fresh + 2 * EXISTS (SELECT 1 FROM tasks "
    "WHERE queue = ?1 AND state = 'pending' AND grp IS NOT NULL AND rejoin = 1), "
    "(SELECT n FROM queue_counts WHERE queue = ?1 AND state = 'pending'), "
    "(SELECT n FROM queue_counts WHERE queue = ?1 AND state = 'processing'), "
    "CASE WHEN h.fresh THEN (" + _FIRST_UNGROUPED + ") END "
    "FROM (SELECT EXISTS (SELECT 1 FROM group_heads WHERE queue = ?1) AS fresh) AS h "
    "LEFT JOIN queues q ON q.name = ?1"
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
     grouped, pending, processing, plain_head) = conn.execute(_QUEUE_STATE, (queue,)).fetchone()
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
                conn, changes, queue, allowed, group_cap, last_group, lease_args, grouped == 1,
                plain_head,
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
    lease_args: tuple, fresh_only: bool, plain_head: int | None,
) -> tuple[list[Task], bool, str | None]:
    """Lease up to ``n`` tasks in turns over the groups (see Storage.lease);
    return them in lease order, whether group_concurrency held a group with
    pending tasks back, and the last group served (the caller stores it)."""
    heads = conn.heads
    blocked = False
    copied = fresh_only and group_cap is None and not heads.shared
    if copied:
        # The usual case: no group can reach a cap and none holds a rejoined
        # task, so the turns go over the groups' fresh tasks, which the
        # writer's copy of group_heads knows (heads.py).
        taken = heads.lease_turns(conn, queue, last, n, _Ungrouped(conn, queue, n, plain_head).seq)
        seqs = [seq for _, seq in taken]
        served = taken[-1][0] if taken else last
    else:
        # Planned turns read and move the heads on disk: make it exact, and
        # let the copy of this queue go (it is read again when next needed).
        heads.exact(conn)
        heads.forget(queue)
        plan = plan_lease(conn, queue, n, group_cap, last)
        seqs, served, blocked = plan.seqs, plan.served, plan.blocked
    if not seqs:
        return [], blocked, last
    rows = conn.execute(_LEASE_SEQS, (*lease_args, orjson.dumps(seqs).decode())).fetchall()
    if len(rows) != len(seqs):  # a wrong copy of group_heads: never trust it again
        heads.lost()
        raise RuntimeError("SQLite store: the group heads in memory disagree with the file")
    by_seq = {r[0]: r for r in rows}  # RETURNING comes in no promised order
    rows = [by_seq[seq] for seq in seqs]
    if not copied:
        _heads_after_lease(conn, queue, rows)
    tasks = [task_from_row(r[2:]) for r in rows]
    _move(conn, queue, "pending", "processing", len(tasks))
    changes.extend([Change(t.id, queue, t.name, "processing", "lease") for t in tasks])
    return tasks, blocked, served


class _Ungrouped:
    """The first ungrouped pending tasks of a queue in lease order, read
    when a lease's turns need more than the first (known from _QUEUE_STATE)."""

    def __init__(self, conn: Conn, queue: str, n: int, first: int | None) -> None:
        self.conn, self.queue, self.n = conn, queue, n
        self.seqs = [] if first is None else [first]
        self.read = first is None  # no first one: there are none

    def seq(self, i: int) -> int | None:
        """The seq of the i-th (0-based) ungrouped pending task, or None."""
        if i >= len(self.seqs) and not self.read:
            self.read = True
            (found,) = self.conn.execute(_UNGROUPED_FIRST, (self.queue, self.n)).fetchone()
            self.seqs = [seq for _, seq in sorted(orjson.loads(found))]
        return self.seqs[i] if i < len(self.seqs) else None


def _heads_after_lease(conn: Conn, queue: str, rows: list) -> None:
    """The fresh tasks in these leased rows (seq, rejoin, TASK_COLUMNS) were
    the first of their levels: move the heads on."""
    fresh = [row for row in rows if row[_GRP] and row[1] is None]
    heads_after_lease(conn, queue, [row[_GRP] for row in fresh], [row[0] for row in fresh])


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
_COMPLETE = (
    "UPDATE tasks SET state = 'completed', result = ?, finished_at = ?, attempts = attempts + 1, "
    f"started_at = coalesce(?, started_at), {CLEAR_LEASE} {_GUARD}"
)
# Many completions in one statement: the JSON list ?2 holds [id, token,
# result (encoded JSON as text, or null), started_at or null] per task.
# One statement, not an executemany: the writer thread lets go of the GIL
# around each row executemany binds (see ops._insert_rows).
_COMPLETE_MANY = (
    "UPDATE tasks SET state = 'completed', result = CAST(json_extract(j.value, '$[2]') AS BLOB), "
    "finished_at = ?1, attempts = attempts + 1, "
    "started_at = coalesce(json_extract(j.value, '$[3]'), started_at), "
    f"{CLEAR_LEASE} FROM json_each(?2) AS j WHERE tasks.id = json_extract(j.value, '$[0]') "
    "AND tasks.lease_token = json_extract(j.value, '$[1]') AND tasks.state = 'processing'"
)
_RELEASE = f"UPDATE tasks SET state = 'pending', {CLEAR_LEASE}, worker = NULL, {REJOIN} {_GUARD}"
_FAIL_RETRY = (
    "UPDATE tasks SET state = 'scheduled', run_at = ?, errors = ?, attempts = attempts + 1, "
    f"started_at = coalesce(?, started_at), {CLEAR_LEASE}, worker = NULL {_GUARD}"
)
_FAIL_DEAD = (
    "UPDATE tasks SET state = 'failed', finished_at = ?, errors = ?, attempts = attempts + 1, "
    f"started_at = coalesce(?, started_at), {CLEAR_LEASE} {_GUARD}"
)


def op_settle(conn: Conn, changes: list, outcomes: Sequence[Outcome], now: float) -> list[bool]:
    accepted = [False] * len(outcomes)
    deltas: Deltas = Counter()
    slow = list(range(len(outcomes)))
    # Fast path: completions whose queue and name the caller knows go in one
    # statement. If any token turns out stale (or a task comes twice) the row
    # count disagrees; then undo it and take the careful path, one statement
    # per outcome.
    fast = [i for i, o in enumerate(outcomes) if o.kind == "complete" and o.queue and o.name]
    try:
        rows = [
            (o.task_id, o.token, None if o.result is None else o.result.decode(), o.started_at)
            for o in (outcomes[i] for i in fast)
        ]
    except UnicodeDecodeError:  # a result that is not UTF-8: the careful path binds it as is
        fast = []
    if fast:
        conn.execute("SAVEPOINT settle_fast")
        cursor = conn.execute(_COMPLETE_MANY, (now, orjson.dumps(rows).decode()))
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


