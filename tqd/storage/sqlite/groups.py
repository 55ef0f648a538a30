"""Which pending tasks a lease of a queue with fair groups takes, and the
bookkeeping that lets it find them cheaply.

Where a group's pending tasks are (migration 6): its fresh ones (enqueued
pending) begin at the group_heads row of each of its priority levels and go
on in tasks_group_fresh; its rejoined ones (back in pending after a lease,
a delay, a retry) are in tasks_group_rejoin. tasks_group_fresh holds fresh
tasks whatever their state, so leasing or settling them writes no entry:
a lease that goes round many groups moves one small group_heads row per
group, on a few pages, where an index partial on state would lose an entry
on a page of each group (and a commit would write all those pages). The
usual lease moves those rows in the writer's memory only (heads.py), and
group_heads on disk is made exact before anything here reads it
(``exact_heads``).

The turns of Storage.lease (one task per group per turn, groups in name
order after the stored cursor, ``""`` standing for the ungrouped tasks) are
played out over a few batched reads, instead of one index seek and one
UPDATE per task: the writer thread shares the GIL with the event loop, so
statements per task, not rows, are what a lease costs. Usually no group can
reach group_concurrency and no task has rejoined; then every group's tasks
are its fresh ones, which the writer's copy of group_heads knows, and the
turns are played in memory (heads.HeadCache.lease_turns). Every lease
otherwise is planned here (``plan_lease``): one statement reads the groups after the cursor, each with its first task and
(with ``group_concurrency``) its processing count, and the first ungrouped
task; two when the rotation wraps round. One more reads further tasks of
every group when the groups must give more than one each, and it is
repeated only when some groups run dry and the others must give more than
first read (or when group caps skip more groups than one read holds). Each
statement seeks indexes; none reads a group's backlog beyond the tasks it
returns.

``plan_lease`` writes nothing: it returns the tasks in lease order and the
caller leases them in one UPDATE, in the same transaction, then moves the
heads (``heads_after_lease``).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

Conn = sqlite3.Connection

# A group's head is the first, in lease order, of its top level's
# group_heads row and its first rejoined task.
#
# The ring: up to ?4 groups holding pending tasks, in name order, after ?2
# and, when ?3 is not NULL, up to ?3 included: (group, priority, seq of a
# head, and if ?6 the group's processing tasks). A group may come twice, once
# from each source; the caller keeps the first head in lease order. The
# group_heads part reads consecutive rows of one table (max() makes seq the
# top level's). The rejoined part is a skip-scan of tasks_group_rejoin, each
# step one seek for the next group's first entry (usually the first seek
# finds none). With ?5, one more row (NULL, priority, seq, NULL): the first
# ungrouped task, if any.
_PLAIN_HEAD = (
    " SELECT NULL, priority, seq, NULL FROM tasks WHERE ?5 AND seq = (SELECT seq FROM tasks WHERE queue = ?1"
    "  AND state = 'pending' AND grp IS NULL ORDER BY priority DESC, seq LIMIT 1)"
)
_BUSY = (
    "CASE WHEN ?6 THEN (SELECT count(*) FROM tasks WHERE queue = ?1"
    "  AND state = 'processing' AND grp = h.grp) END"
)
_FRESH_HEADS = (
    "SELECT grp, max(priority) AS priority, seq FROM group_heads WHERE queue = ?1 AND grp > ?2"
    "  AND (?3 IS NULL OR grp <= ?3) GROUP BY grp ORDER BY grp LIMIT ?4"
)
_FIRST_REJOINED = (
    "SELECT seq FROM tasks WHERE queue = ?1 AND state = 'pending' AND grp IS NOT NULL AND rejoin = 1"
)
_RING = (
    "WITH RECURSIVE back(grp, priority, seq) AS ("
    " SELECT grp, priority, seq FROM tasks WHERE seq = (" + _FIRST_REJOINED
    + "  AND grp > ?2 ORDER BY grp, priority DESC, seq LIMIT 1)"
    " UNION ALL"
    " SELECT t.grp, t.priority, t.seq FROM back, tasks AS t WHERE t.seq = (" + _FIRST_REJOINED
    + "  AND grp > back.grp ORDER BY grp, priority DESC, seq LIMIT 1)"
    "  AND (?3 IS NULL OR back.grp < ?3) LIMIT ?4"
    "), h(grp, priority, seq) AS ("
    " SELECT grp, priority, seq FROM back WHERE ?3 IS NULL OR grp <= ?3"
    " UNION ALL SELECT * FROM (" + _FRESH_HEADS + ")"
    ") SELECT grp, priority, seq, " + _BUSY + " FROM h"
    " UNION ALL" + _PLAIN_HEAD
)
# _RING for one group (?4 = 1), without the cost of setting up a recursive
# query, which a lease of one task would mostly spend on.
_RING_ONE = (
    "SELECT grp, priority, seq, " + _BUSY + " FROM ("
    " SELECT grp, priority, seq FROM tasks WHERE seq = (" + _FIRST_REJOINED
    + "  AND grp > ?2 ORDER BY grp, priority DESC, seq LIMIT 1) AND (?3 IS NULL OR grp <= ?3)"
    " UNION ALL SELECT * FROM (" + _FRESH_HEADS + ")"
    ") AS h WHERE ?4 = 1"
    " UNION ALL" + _PLAIN_HEAD
)
# The first ?3 pending tasks in lease order (priority, then FIFO) of each
# group in the JSON list ?2, and the first ?4 ungrouped ones: (group or
# NULL, priority, seq), unordered. From each priority level of a group its
# first ?3 fresh tasks (the entries from the level's head on, all pending),
# and its first ?3 rejoined ones: the caller keeps the group's first ?3 of
# those. Every read is a seek in an index and a walk of as many entries as
# asked for. (LIMIT cannot name a column of the outer query, so one
# statement asks every group for as many.)
_CANDIDATES = (
    "SELECT h.grp, t.priority, t.seq FROM group_heads AS h, tasks AS t "
    "WHERE h.queue = ?1 AND h.grp IN (SELECT value FROM json_each(?2)) "
    "AND t.seq IN (SELECT seq FROM tasks WHERE queue = ?1 AND grp = h.grp AND rejoin IS NULL "
    "AND priority = h.priority AND seq >= h.seq ORDER BY seq LIMIT ?3) "
    "UNION ALL "
    "SELECT j.value, t.priority, t.seq FROM json_each(?2) AS j, tasks AS t "
    "WHERE t.seq IN (SELECT seq FROM tasks WHERE queue = ?1 AND state = 'pending' "
    "AND grp = j.value AND rejoin = 1 ORDER BY priority DESC, seq LIMIT ?3) "
    "UNION ALL "
    "SELECT NULL, priority, seq FROM tasks WHERE seq IN (SELECT seq FROM tasks "
    "WHERE queue = ?1 AND state = 'pending' AND grp IS NULL ORDER BY priority DESC, seq LIMIT ?4)"
)


# -- keeping group_heads -------------------------------------------------------
#
# What holds after every operation (migration 6): for each priority level
# of each group, the entries of tasks_group_fresh from the level's
# group_heads row on are exactly its fresh pending tasks, and a level
# without fresh pending tasks has no row. A lease takes the first fresh
# tasks of a level and leaves their entries behind the head, which moves on
# past them (heads_after_lease), so the index is not written. Every other
# way out of pending takes the entry out of the index: delete and purge
# remove the row, cancel sets REJOIN; then the head moves to the first
# entry left at or after it (heads_after_removal). An enqueue adds fresh
# tasks after every entry (heads_after_enqueue). A task coming back to
# pending (release, reclaim, promote, retry, redrive) sets REJOIN: it is
# read from tasks_group_rejoin instead.
#
# So a head moves with one seek in tasks_group_fresh, which reads no task.

#: SET clause for a grouped task that comes back to pending or is cancelled:
#: it leaves tasks_group_fresh for good.
REJOIN = "rejoin = CASE WHEN grp IS NOT NULL THEN 1 END"

# Fresh pending grouped tasks inserted with seq above ?1: the first of each
# level becomes its head unless the level has an earlier one. (A level's
# head usually is earlier; a later-inserted task can only come first when
# the newest rows were deleted and their seqs handed out again.) NOT
# INDEXED: read the new rows by seq, not every fresh task in group order.
_HEADS_AFTER_ENQUEUE = (
    "INSERT INTO group_heads (queue, grp, priority, seq) "
    "SELECT queue, grp, priority, min(seq) FROM tasks NOT INDEXED WHERE seq > ?1 "
    "AND grp IS NOT NULL AND rejoin IS NULL AND state = 'pending' GROUP BY queue, grp, priority "
    "ON CONFLICT (queue, grp, priority) DO UPDATE SET seq = excluded.seq WHERE excluded.seq < seq"
)
# A lease took the fresh tasks with the seqs in the JSON list ?3, of the
# groups in ?2: the levels whose head it took (a lease takes each level's
# fresh tasks from the head on) move their head to the first entry after it
# that the lease did not take (NULL: none). One statement, however many.
_HEADS_AFTER_LEASE = (
    "UPDATE group_heads SET seq = (SELECT seq FROM tasks WHERE queue = ?1 AND grp = group_heads.grp "
    "AND rejoin IS NULL AND priority = group_heads.priority AND seq > group_heads.seq "
    "AND seq NOT IN (SELECT value FROM json_each(?3)) ORDER BY seq LIMIT 1) "
    "WHERE queue = ?1 AND grp IN (SELECT value FROM json_each(?2)) "
    "AND seq IN (SELECT value FROM json_each(?3))"
)
# The levels in the JSON list ?2 of [group, priority] lost entries: each
# head moves to the first entry left at or after it (NULL: none).
_HEADS_AFTER_REMOVAL = (
    "UPDATE group_heads SET seq = (SELECT seq FROM tasks WHERE queue = ?1 AND grp = group_heads.grp "
    "AND rejoin IS NULL AND priority = group_heads.priority AND seq >= group_heads.seq "
    "ORDER BY seq LIMIT 1) WHERE queue = ?1 AND (grp, priority) IN "
    "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))"
)
# Levels left without a head: a seek in group_heads_gone, which holds only
# those (named, as the planner would rather walk all the queue's levels).
_HEADS_DROP = "DELETE FROM group_heads INDEXED BY group_heads_gone WHERE queue = ? AND seq IS NULL"


def exact_heads(conn: Conn, queues: Iterable[str]) -> None:
    """Make group_heads on disk exact before statements that read or move
    the heads of ``queues``, and let the writer's copy of theirs go
    (heads.py: the usual lease moves heads in memory only)."""
    heads = conn.heads
    heads.exact(conn)
    for queue in queues:
        heads.forget(queue)


def heads_after_enqueue(conn: Conn, after: int, queues: Iterable[str]) -> None:
    """Give the fresh pending grouped tasks inserted with seq above ``after``
    (of ``queues``) their place in group_heads."""
    exact_heads(conn, queues)
    conn.execute(_HEADS_AFTER_ENQUEUE, (after,))


def heads_after_lease(conn: Conn, queue: str, groups: Iterable[str], seqs: list[int]) -> None:
    """Move on the heads of the levels a planned lease took fresh tasks from:
    the tasks ``seqs`` of ``groups`` (each level's first fresh ones). The
    caller made the heads of ``queue`` exact before planning."""
    if seqs:
        args = (queue, orjson.dumps(list(set(groups))).decode(), orjson.dumps(seqs).decode())
        conn.execute(_HEADS_AFTER_LEASE, args)
        conn.execute(_HEADS_DROP, (queue,))


def heads_after_removal(conn: Conn, queue: str, levels: Iterable[tuple[str, int]]) -> None:
    """Move on the heads of these (group, priority) levels of ``queue`` after
    some of their fresh pending tasks left tasks_group_fresh (deleted, or
    cancelled with REJOIN)."""
    listed = orjson.dumps(list(set(levels))).decode()
    if listed != "[]":
        exact_heads(conn, [queue])
        conn.execute(_HEADS_AFTER_REMOVAL, (queue, listed))
        conn.execute(_HEADS_DROP, (queue,))


@dataclass
class Plan:
    """The tasks (by seq) a lease takes, in lease order; the group of the
    last one (the new cursor; None if none); and whether group_concurrency
    held back a group that still had pending tasks."""

    seqs: list[int] = field(default_factory=list)
    served: str | None = None
    blocked: bool = False


class _Ring:
    """The groups with pending tasks in rotation order, read in batches:
    after ``last``, then ``""``, then wrapping round up to ``last`` itself
    (see Storage.lease). ``""`` is always in it, holding tasks or not.
    Reading a group also reads its first task (``heads``) and, when
    ``counted``, its processing tasks (``busy``); the first read also reads
    the first ungrouped task."""

    def __init__(self, conn: Conn, queue: str, last: str | None, counted: bool) -> None:
        self.conn, self.queue, self.counted = conn, queue, counted
        self.names: list[str] = []
        self.heads: dict[str, list[int]] = {}
        self.busy: dict[str, int] = {}
        self._plain_read = False
        # What is left to read: "" itself, or a range of names (above lo,
        # up to hi included; hi None: no bound).
        self.todo: list[str | tuple[str, str | None]]
        if last is None:
            self.todo = ["", ("", None)]
        elif last == "":
            self.todo = [("", None), ""]
        else:
            self.todo = [(last, None), "", ("", last)]

    @property
    def done(self) -> bool:
        return not self.todo

    def grow(self, m: int) -> list[str]:
        """Read up to ``m`` more named groups (and ``""`` when its place
        comes); return the new entries."""
        new: list[str] = []
        while self.todo and m > 0:
            part = self.todo[0]
            if isinstance(part, str):
                new.append(part)
                self.todo.pop(0)
                continue
            lo, hi = part
            args = (self.queue, lo, hi, m, not self._plain_read, self.counted)
            sql = _RING_ONE if m == 1 else _RING
            found: dict[str, tuple[tuple[int, int], int | None]] = {}
            for group, priority, seq, busy in self.conn.execute(sql, args).fetchall():
                if group is None:
                    self.heads[""] = [seq]
                    continue
                # A group with fresh and rejoined tasks comes twice: its head
                # is the first of the two in lease order.
                key = (-priority, seq)
                if group not in found or key < found[group][0]:
                    found[group] = (key, busy)
            # The first m names of the two sources together (rows come in no
            # promised order); each source read m, so none is missing.
            got = sorted(found)[:m]
            for group in got:
                (_, seq), busy = found[group]
                self.heads[group] = [seq]
                if busy:
                    self.busy[group] = busy
            if not self._plain_read:
                self._plain_read = True
                self.heads.setdefault("", [])
            new += got
            m -= len(got)
            if m > 0:  # fewer than asked: this range is exhausted
                self.todo.pop(0)
            else:
                self.todo[0] = (got[-1], hi)
        self.names += new
        return new


def plan_lease(conn: Conn, queue: str, n: int, group_cap: int | None, last: str | None) -> Plan:
    """Choose up to ``n`` pending tasks of ``queue`` in turns over its groups,
    exactly as Storage.lease describes, without leasing them."""
    ring = _Ring(conn, queue, last, group_cap is not None)
    busy = ring.busy  # group -> processing tasks (only with group_cap)
    asked: dict[str, int] = {}  # group -> how many of its first tasks were read
    tasks: dict[str, list[int]] = {}  # group -> those tasks' seqs in lease order

    def room(group: str) -> int:
        if group_cap is None or group == "":
            return n
        return max(0, group_cap - busy.get(group, 0))

    def fetch(groups: Iterable[str], k: int) -> None:
        # Read the first k tasks of each group, skipping those read that
        # far and those capped below what was read: a capped group gives at
        # most room(g) tasks, and one read beyond them tells it holds more
        # (``blocked``).
        groups = [g for g in groups if asked.get(g, 0) < k and asked.get(g, 0) <= room(g)]
        if not groups:
            return
        named = [g for g in groups if g]
        plain = k if len(named) < len(groups) else 0
        rows = conn.execute(_CANDIDATES, (queue, orjson.dumps(named).decode(), k, plain)).fetchall()
        found: dict[str, list[tuple[int, int]]] = {g: [] for g in groups}
        for group, priority, seq in rows:
            found[group or ""].append((-priority, seq))
        for group, got in found.items():
            # Each priority level and the rejoined tasks gave up to k: the
            # group's first k are among them.
            got.sort()
            tasks[group] = [seq for _, seq in got[:k]]
            asked[group] = k

    def extend_ring(taken: int) -> None:
        new = ring.grow(max(1, n - taken))
        for group in new:  # each new group's first task came with it
            if group in ring.heads and group not in asked:
                tasks[group], asked[group] = ring.heads[group], 1
        # Until the ring is read to its end a group gives at most one task
        # in the first turn; once it is, spread what is left over all.
        k = 1 if not ring.done else math.ceil(n / max(1, len(ring.names)))
        fetch(new, k)

    while True:
        plan, need = _play(ring, tasks, asked, room, n)
        if need is None:
            return plan
        if need == "ring":
            extend_ring(len(plan.seqs))
        else:
            # Some groups ran out of the tasks read while they may hold
            # more: read more for all of them, at least twice as many.
            share = math.ceil((n - len(plan.seqs)) / len(need))
            fetch(need, max(2 * max(asked[g] for g in need), min(asked[g] for g in need) + share))


def _play(ring: _Ring, tasks: dict[str, list[int]], asked: dict[str, int], room, n: int):
    """Play the turns over what has been read: (plan, None) when it is
    enough, else (partial plan, "ring") when the first turn needs more
    groups, or (partial plan, groups) naming the groups that may hold more
    tasks than were read."""
    plan = Plan()
    used: dict[str, int] = {}

    def more(group: str) -> bool:  # may hold more than read?
        return len(tasks[group]) == asked[group]

    def take(group: str):  # True: took one; False: none to take; None: unknown
        i = used.get(group, 0)
        if i == len(tasks[group]):  # used up what was read
            return None if more(group) else False
        if i >= room(group):
            plan.blocked = True  # at its cap with a task left
            return False
        used[group] = i + 1
        plan.seqs.append(tasks[group][i])
        plan.served = group
        return True

    def starved() -> set[str]:
        return {g for g in tasks if used.get(g, 0) == len(tasks[g]) and more(g)}

    # The first turn walks the whole ring; later turns only the groups that
    # gave a task in the turn before (no group appears mid-lease).
    live: list[str] = []
    for group in ring.names:
        took = take(group)
        if took is None:
            return plan, starved()
        if took:
            live.append(group)
            if len(plan.seqs) >= n:
                return plan, None
    if not ring.done:
        return plan, "ring"
    while live and len(plan.seqs) < n:
        still = []
        for group in live:
            took = take(group)
            if took is None:
                return plan, starved()
            if took:
                still.append(group)
                if len(plan.seqs) >= n:
                    break
        live = still
    return plan, None
