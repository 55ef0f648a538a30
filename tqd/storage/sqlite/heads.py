"""The writer thread's own copy of group_heads, so that the usual lease of a
queue with fair groups (no group capped, no task rejoined, see groups.py)
plays its turns and moves each group's head in memory instead of writing a
group_heads row per group it serves: a lease that went round 50 groups
wrote 50 rows, the largest cost of fair groups. The copy also holds the
next few fresh entries of each level, read for many groups in one
statement, so a head moves on without a read of its own.

Only the writer thread writes the file (one tqd process holds it, see
backend.py), so its copy can be the truth between commits, and group_heads
on disk may lag behind it: after a lease, a row may still name a task the
copy has moved past. What holds on disk at every commit is weaker than
groups.py's rule, and enough to rebuild it:

- each level (queue, group, priority) with fresh pending tasks has a row;
- its seq is at or before the level's first fresh pending task, and the
  level's fresh entries (tasks_group_fresh) from it up to that task are all
  not pending (leased: they left pending in lease order, and any other way
  out of pending takes a task out of the index);
- a row may stand for a level with no fresh pending task left.

``exact`` writes what the copy knows (the moved heads; after a failure, when
the copy is gone, it walks each lagging row forward to its first pending
entry, and removes rows of levels left empty), after which groups.py's rule
holds again. Every statement other than those of ``lease_turns`` that
reads or writes group_heads is preceded by it, and the first use after the
store opens finds any lag a crash left: so groups.py and its statements see
exact heads.

The copy follows the transaction it lives in: an operation that fails after
changing it (its savepoint rolled back), and a group commit that fails,
throw the copy away (``lost``), and the next use rebuilds from disk.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from collections import deque
from collections.abc import Callable

import orjson

# The next fresh entries after given seqs: for each [group, priority, seq]
# in the JSON list ?2, the first ?3 entries of that level after seq, as one
# JSON list of [index in ?2, "seq,seq,..." or null] (one row: the writer
# fetches each row with a GIL hand-off of its own).
_AHEAD = (
    "SELECT json_group_array(json_array(j.key, (SELECT group_concat(seq) FROM (SELECT seq FROM tasks "
    "WHERE queue = ?1 AND grp = json_extract(j.value, '$[0]') AND rejoin IS NULL "
    "AND priority = json_extract(j.value, '$[1]') AND seq > json_extract(j.value, '$[2]') "
    "ORDER BY seq LIMIT ?3)))) FROM json_each(?2) AS j"
)
# The heads the copy moved: [group, priority, seq or null] in the JSON list
# ?2, for queue ?1 (null: the level has no fresh pending task left).
_WRITE = (
    "WITH j(g, p, s) AS MATERIALIZED (SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?2)) "
    "UPDATE group_heads SET seq = j.s FROM j WHERE group_heads.queue = ?1 "
    "AND group_heads.grp = j.g AND group_heads.priority = j.p"
)
# Rows whose task is not a fresh pending one of their own level move on to
# the level's first fresh pending entry at or after them (NULL: none): a
# walk over the entries the copy had moved past before it was lost. (Own
# level: the task a lagging row names may be gone, and its seq handed to a
# new task of another group.)
_CATCH_UP = (
    "UPDATE group_heads SET seq = (SELECT t.seq FROM tasks AS t INDEXED BY tasks_group_fresh "
    "WHERE t.queue = group_heads.queue AND t.grp = group_heads.grp AND t.rejoin IS NULL "
    "AND t.priority = group_heads.priority AND t.seq >= group_heads.seq AND t.state = 'pending' "
    "ORDER BY t.seq LIMIT 1) "
    "WHERE NOT EXISTS (SELECT 1 FROM tasks AS h WHERE h.seq = group_heads.seq "
    "AND h.state = 'pending' AND h.rejoin IS NULL AND h.queue = group_heads.queue "
    "AND h.grp = group_heads.grp AND h.priority = group_heads.priority)"
)
_DROP_ALL = "DELETE FROM group_heads INDEXED BY group_heads_gone WHERE seq IS NULL"
_LEVELS = "SELECT grp, priority, seq FROM group_heads WHERE queue = ? ORDER BY grp"

#: Entries read ahead per level at a time: one statement reads the next
#: heads of every group served for this many leases.
AHEAD = 32
#: Heads moved in memory before they are written anyway, so a crash leaves
#: at most about this many entries to walk when the store opens again.
WRITE_AFTER = 20_000


class _Level:
    """One priority level of one group: its head (None: the level has no
    fresh pending task left), and the fresh entries after it as far as read.
    Unless ``complete`` (they are all of them), ``ahead`` is never empty."""

    __slots__ = ("ahead", "complete", "group", "head", "priority", "queue")

    def __init__(self, queue: str, group: str, priority: int, head: int) -> None:
        self.queue, self.group, self.priority = queue, group, priority
        self.head: int | None = head
        self.ahead: deque[int] = deque()
        self.complete = False


class _QueueHeads:
    """The groups of one queue with fresh pending tasks, in name order, and
    each group's levels, highest priority first."""

    __slots__ = ("levels", "names")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.levels: dict[str, list[_Level]] = {}


class HeadCache:
    """The writer's copy of group_heads (see the module docstring)."""

    def __init__(self, *, shared: bool = False) -> None:
        #: Another handle may write the file too: leases must not use the copy.
        self.shared = shared
        self._queues: dict[str, _QueueHeads] = {}
        self._moved: set[_Level] = set()  # levels whose head on disk lags behind
        # Whether disk may lag with no copy to tell by how much (at open,
        # after a crash; after a failure threw the copy away).
        self._lagging = True
        self._unwritten = 0  # heads moved in memory since the last write
        #: Counts every change of the copy or of group_heads made through it,
        #: so a failed operation knows whether it must throw the copy away.
        self.epoch = 0

    # -- keeping disk exact ----------------------------------------------------

    def exact(self, conn: sqlite3.Connection) -> None:
        """Make group_heads on disk exact (groups.py's rule) in the current
        transaction."""
        if self._lagging:
            self.epoch += 1
            conn.execute(_CATCH_UP)
            conn.execute(_DROP_ALL)
            self._lagging = False
        if self._moved:
            self.epoch += 1
            by_queue: dict[str, list] = {}
            for level in self._moved:
                by_queue.setdefault(level.queue, []).append([level.group, level.priority, level.head])
            for queue, rows in by_queue.items():
                conn.execute(_WRITE, (queue, orjson.dumps(rows).decode()))
            conn.execute(_DROP_ALL)
            self._moved.clear()
        self._unwritten = 0

    def forget(self, queue: str) -> None:
        """Drop the copy of ``queue`` (after ``exact``), before statements
        that change its heads on disk."""
        self._queues.pop(queue, None)

    def lost(self) -> None:
        """The transaction the copy followed was rolled back: throw it away."""
        self._queues.clear()
        self._moved.clear()
        self._lagging = True
        self.epoch += 1

    # -- leasing ---------------------------------------------------------------

    def lease_turns(self, conn: sqlite3.Connection, queue: str, last: str | None, n: int,
                    plain: Callable[[int], int | None]) -> list[tuple[str, int]]:
        """Take up to ``n`` tasks of ``queue`` in turns after ``last``, as
        Storage.lease plays them (one task per group per turn, groups in name
        order after the cursor, ``""`` standing for the ungrouped tasks; a
        turn after the first goes round the groups that gave in the turn
        before), when no group is capped and no grouped task has rejoined:
        each group's tasks are then its levels' fresh entries, which this
        copy knows. Returns (group, seq) in lease order and moves the heads
        past the tasks taken; ``plain(i)`` is the seq of the i-th (0-based)
        ungrouped pending task in lease order, or None."""
        held = self._queues.get(queue) or self._load(conn, queue)
        names = held.names
        if last is None:
            ring = ["", *names[:n]]
        elif last == "":
            ring = [*names[:n], ""]
        else:
            cut = bisect_right(names, last)
            ring = [*names[cut : cut + n], ""]
            if len(ring) <= n:
                ring += names[: min(cut, n + 1 - len(ring))]
        self.epoch += 1
        taken: list[tuple[str, int]] = []
        plain_taken = 0
        refill: set[_Level] = set()  # levels whose entries ahead ran out
        live = ring[: n + 1]  # "" may hold no task: one name more
        while live and len(taken) < n:
            still = []
            for group in live:
                if group == "":
                    seq = plain(plain_taken)
                    if seq is None:
                        continue
                    plain_taken += 1
                else:
                    seq = self._take(conn, queue, held, group, refill)
                taken.append((group, seq))
                if group == "" or group in held.levels:
                    still.append(group)
                if len(taken) == n:
                    break
            live = still
        # Read ahead, in one statement, for the levels that ran out (not
        # those read again while taken again, nor those left empty).
        refill_now = [lv for lv in refill if not lv.ahead and lv.head is not None]
        if refill_now:
            self._read_ahead(conn, queue, refill_now)
        self._unwritten += len(taken)
        if self._unwritten >= WRITE_AFTER:
            self.exact(conn)
        return taken

    def _take(self, conn: sqlite3.Connection, queue: str, held: _QueueHeads, group: str,
              refill: set[_Level]) -> int:
        """Take the first task of ``group`` (which has one) and move its head on."""
        levels = held.levels[group]
        level = levels[0]
        seq = level.head
        self._moved.add(level)
        if not level.ahead and not level.complete:
            self._read_ahead(conn, queue, [level])  # taken again in this lease
        if level.ahead:
            level.head = level.ahead.popleft()
            if not level.ahead and not level.complete:
                refill.add(level)
        else:
            level.head = None
            del levels[0]
            if not levels:
                del held.levels[group]
                del held.names[bisect_right(held.names, group) - 1]
        return seq

    def _read_ahead(self, conn: sqlite3.Connection, queue: str, levels: list[_Level]) -> None:
        """Read the next AHEAD fresh entries of each of ``levels`` after
        those read so far (their heads when none), in one statement."""
        asked = [[lv.group, lv.priority, lv.ahead[-1] if lv.ahead else lv.head] for lv in levels]
        (found,) = conn.execute(_AHEAD, (queue, orjson.dumps(asked).decode(), AHEAD)).fetchone()
        for i, listed in orjson.loads(found):
            level = levels[i]
            seqs = sorted(map(int, listed.split(","))) if listed else []
            level.ahead.extend(seqs)
            level.complete = len(seqs) < AHEAD

    def _load(self, conn: sqlite3.Connection, queue: str) -> _QueueHeads:
        """Read the heads of ``queue`` from disk (made exact first) and the
        entries after each."""
        self.exact(conn)
        held = _QueueHeads()
        for group, priority, seq in conn.execute(_LEVELS, (queue,)).fetchall():
            if group not in held.levels:
                held.names.append(group)
                held.levels[group] = []
            held.levels[group].append(_Level(queue, group, priority, seq))
        every = []
        for levels in held.levels.values():
            levels.sort(key=lambda level: -level.priority)
            every += levels
        if every:
            self._read_ahead(conn, queue, every)
        self._queues[queue] = held
        return held
