"""Which pending tasks a lease of a queue with fair groups takes.

The turns of Storage.lease (one task per group per turn, groups in name
order after the stored cursor, ``""`` standing for the ungrouped tasks) are
played out in Python over a few batched reads, instead of one index seek and
one UPDATE per task: the writer thread shares the GIL with the event loop,
so statements per task, not rows, are what a lease costs. A lease of ``n``
tasks usually reads with one statement: the groups after the cursor, each
with its first task and (with ``group_concurrency``) its processing count,
and the first ungrouped task; two when the rotation wraps round. One more
reads further tasks of every group when the groups must give more than one
each, and it is repeated only when some groups run dry and the others must
give more than first read (or when group caps skip more groups than one
read holds). Each statement seeks the partial indexes; none reads a group's
backlog beyond the tasks it returns.

Nothing here writes: ``plan_lease`` returns the tasks in lease order and
the caller leases them in one UPDATE, in the same transaction.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

Conn = sqlite3.Connection

# Up to ?4 groups holding pending tasks, in name order, after ?2 and, when
# ?3 is not NULL, up to ?3 included: (group, its first task's seq, and if
# ?6 its processing tasks). A skip-scan of tasks_group_pending: each step is
# one seek for the first entry past the previous group, which is the next
# group's first task in lease order (the index runs grp, priority DESC,
# seq), however many tasks each group holds; then a rowid lookup for its
# name. The LIMIT on the recursive part stops the recursion itself. With
# ?5, one more row (NULL, seq, NULL): the first ungrouped task, if any.
_PLAIN_HEAD = (
    " SELECT NULL, seq, NULL FROM tasks WHERE ?5 AND seq = (SELECT seq FROM tasks WHERE queue = ?1"
    "  AND state = 'pending' AND grp IS NULL ORDER BY priority DESC, seq LIMIT 1)"
)
_RING = (
    "WITH RECURSIVE ring(grp, seq) AS ("
    " SELECT grp, seq FROM tasks WHERE seq = (SELECT seq FROM tasks WHERE queue = ?1"
    "  AND state = 'pending' AND grp IS NOT NULL AND grp > ?2 ORDER BY grp, priority DESC, seq LIMIT 1)"
    " UNION ALL"
    " SELECT t.grp, t.seq FROM ring, tasks AS t WHERE t.seq = (SELECT seq FROM tasks WHERE queue = ?1"
    "  AND state = 'pending' AND grp IS NOT NULL AND grp > ring.grp ORDER BY grp, priority DESC, seq LIMIT 1)"
    "  AND (?3 IS NULL OR ring.grp < ?3) LIMIT ?4"
    ") SELECT grp, seq, CASE WHEN ?6 THEN (SELECT count(*) FROM tasks WHERE queue = ?1"
    "  AND state = 'processing' AND grp = ring.grp) END"
    " FROM ring WHERE ?3 IS NULL OR grp <= ?3"
    " UNION ALL" + _PLAIN_HEAD
)
# _RING for one group (?4 = 1), without the cost of setting up a recursive
# query, which a lease of one task would mostly spend on.
_RING_ONE = (
    "SELECT grp, seq, CASE WHEN ?6 THEN (SELECT count(*) FROM tasks WHERE queue = ?1"
    "  AND state = 'processing' AND grp = t.grp) END"
    " FROM tasks AS t WHERE seq = (SELECT seq FROM tasks WHERE queue = ?1 AND state = 'pending'"
    "  AND grp IS NOT NULL AND grp > ?2 ORDER BY grp, priority DESC, seq LIMIT 1)"
    "  AND (?3 IS NULL OR grp <= ?3) AND ?4 = 1"
    " UNION ALL" + _PLAIN_HEAD
)
# The first ?3 pending tasks in lease order (priority, then FIFO) of each
# group in the JSON list ?2, and the first ?4 ungrouped ones: (group or
# NULL, priority, seq), unordered. The correlated subquery reads only as
# many index entries per group as asked for. (LIMIT cannot name a column
# of the outer query, so one statement asks every group for as many.)
_CANDIDATES = (
    "SELECT j.value, t.priority, t.seq FROM json_each(?2) AS j, tasks AS t "
    "WHERE t.seq IN (SELECT seq FROM tasks WHERE queue = ?1 AND state = 'pending' "
    "AND grp = j.value ORDER BY priority DESC, seq LIMIT ?3) "
    "UNION ALL "
    "SELECT NULL, priority, seq FROM tasks WHERE seq IN (SELECT seq FROM tasks "
    "WHERE queue = ?1 AND state = 'pending' AND grp IS NULL ORDER BY priority DESC, seq LIMIT ?4)"
)


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
            got = []
            sql = _RING_ONE if m == 1 else _RING
            for group, seq, busy in self.conn.execute(sql, args).fetchall():
                if group is None:
                    self.heads[""] = [seq]
                    continue
                got.append(group)
                self.heads[group] = [seq]
                if busy:
                    self.busy[group] = busy
            if not self._plain_read:
                self._plain_read = True
                self.heads.setdefault("", [])
            got.sort()  # rows come in no promised order
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
            got.sort()
            tasks[group] = [seq for _, seq in got]
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
