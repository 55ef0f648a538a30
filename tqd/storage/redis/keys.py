"""Every Redis key name tqd uses, built in one place.

Layout (prefix ``tqd`` by default; ``Q`` is a queue name)::

    tqd:queues                      SET    names of every known queue
    tqd:events                      PUBSUB channel of change events (all queues)
    tqd:{w}:exp                     ZSET   worker id -> registration expiry
    tqd:{w}:info                    HASH   worker id -> WorkerInfo as JSON
    tqd:{cron}:fired                HASH   schedule name -> "<instant> <fired_at>",
                                           the last instant it fired for
    tqd:stats:<step>:<Q>:<t>        HASH   statistics of queue Q (or * for all
                                           queues) in the bucket of <step>
                                           seconds (1 or 60) starting at <t>:
                                           e, c, f (enqueued, completed, failed)
                                           and h<i> (latency histogram bucket i);
                                           expires after its retention

    tqd:{q:Q}:c                     HASH   state -> number of tasks (the counts),
                                           and the queue's settings in fields
                                           starting with _ (limits, rate
                                           bucket, group rotation cursor,
                                           config digest, number of grouped
                                           pending tasks: scripts.py, LEASE)
    tqd:{q:Q}:paused                STRING exists while the queue is paused
    tqd:{q:Q}:t:<id>                HASH   one task, short field names (codec.py)
    tqd:{q:Q}:i:<idempotency key>   STRING -> task id, deleted with the task
    tqd:{q:Q}:u:<name>:<unique key> STRING -> id of the unique task holding the
                                           key; expires a little after its
                                           unique_until, deleted when it finishes
    tqd:{q:Q}:xs                    SET    names of the live streams below
    tqd:{q:Q}:x:<stream>            ZSET   the stream's directory of buckets
    tqd:{q:Q}:x:<stream>/<bound>    ZSET   one bucket: up to 128 ids >= bound
        where <stream> is pending:<prio>:<name> for pending tasks of one
        priority and name, <state>:<name> for the finished and scheduled
        states; processing tasks (few: as many as workers run) have no
        stream and are listed from z:processing
    tqd:{q:Q}:z:<state>             ZSET   id -> time, for every state but pending:
                                           run_at (scheduled), lease expiry
                                           (processing), finished_at (finished)
    tqd:{q:Q}:g:<group>             ZSET   pending ids of one fair group ->
                                           -priority (lease order: priority,
                                           then id); exists while not empty
    tqd:{q:Q}:gs                    ZSET   names of the groups with pending
                                           tasks, all scores 0 (name order)
    tqd:{q:Q}:gp                    HASH   group -> its processing tasks (> 0)

Pending tasks with a group are listed from the stream pending:g:<name>
instead of pending:<prio>:<name>, so the lease of ungrouped tasks never reads
them; the lease takes them from their group's index. A queue without groups
has none of these keys and an ungrouped task no group field.

Hash tags: every key of one queue carries ``{q:Q}``, so every script touches
one hash slot and the same scripts run on Redis Cluster. Scripts receive one
key of the queue in KEYS (its counts hash) and the queue's key prefix in
ARGV, and build the other names of that queue themselves; they are all in
the same slot. The few global keys (queue registry, workers) are never
touched by a queue script.

Task bodies carry the queue's tag too, so lease and settle scripts stay
single-slot. The task id encodes no queue (ids come from tqd.ids), so the
operations that start from an id alone find the queue as follows:

* extend and settle read it from the lease token, which tqd makes as
  ``<random hex>:<queue>`` (a token is opaque to its holders);
* get, cancel, retry and delete look the id up in every known queue in one
  pipelined round trip (an O(1) HGETALL/EXISTS per queue). Queues are few
  and these are API calls, not the hot path; an id -> queue index would
  cost memory per task and a cross-slot write on every enqueue.

Streams: the ids of one queue are split by state and task name (and, when
pending, by priority) into sorted sets whose members all have score 0, so
they are ordered by id, that is by creation time. A pending stream is at
once the lease order (highest priority first, then the oldest id: FIFO) and
a listing index; every listing (newest first) merges the streams that match
its filters, so its cost grows with the page, not with the stored tasks.

A stream is cut into buckets of at most 128 ids (a B-tree of two levels,
scripts.py has the code), because Redis keeps a sorted set that small as a
listpack: about 25 bytes per id instead of about 115 in a skiplist. That is
what keeps a queued task near 215 bytes of Redis memory (tests measure it).
"""

from __future__ import annotations

DEFAULT_PREFIX = "tqd"


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix or any(c in prefix for c in "{} \t\r\n"):
            raise ValueError(f"invalid Redis key prefix {prefix!r}")
        self.prefix = prefix
        self.queues = f"{prefix}:queues"
        self.events = f"{prefix}:events"
        self.workers_exp = f"{prefix}:{{w}}:exp"
        self.workers_info = f"{prefix}:{{w}}:info"
        self.cron_fired = f"{prefix}:{{cron}}:fired"

    def queue_prefix(self, queue: str) -> str:
        """The prefix of every key of ``queue`` (scripts append the rest)."""
        return f"{self.prefix}:{{q:{queue}}}:"

    def counts(self, queue: str) -> str:
        """The counts hash of ``queue``: the KEYS[1] of every queue script."""
        return f"{self.prefix}:{{q:{queue}}}:c"

    def paused(self, queue: str) -> str:
        """Exists while ``queue`` is paused."""
        return f"{self.prefix}:{{q:{queue}}}:paused"

    def task(self, queue: str, task_id: str) -> str:
        """The hash of one task."""
        return f"{self.prefix}:{{q:{queue}}}:t:{task_id}"

    def scheduled(self, queue: str) -> str:
        """Scheduled ids of ``queue`` by run_at."""
        return f"{self.prefix}:{{q:{queue}}}:z:scheduled"

    def time_index(self, queue: str, state: str) -> str:
        """Ids of ``queue`` in a non-pending ``state`` by their time."""
        return f"{self.prefix}:{{q:{queue}}}:z:{state}"

    def group_index(self, queue: str, group: str) -> str:
        """Pending ids of one fair group of ``queue`` by -priority."""
        return f"{self.prefix}:{{q:{queue}}}:g:{group}"

    def groups(self, queue: str) -> str:
        """Names of the groups of ``queue`` that have pending tasks."""
        return f"{self.prefix}:{{q:{queue}}}:gs"

    def group_processing(self, queue: str) -> str:
        """Group -> number of its processing tasks."""
        return f"{self.prefix}:{{q:{queue}}}:gp"

    def streams(self, queue: str) -> str:
        """The set of live stream names of ``queue``."""
        return f"{self.prefix}:{{q:{queue}}}:xs"

    def stats(self, step: int, queue: str, t: int) -> str:
        """One statistics bucket (a script touches one at a time, any slot)."""
        return f"{self.prefix}:stats:{step}:{queue}:{t}"


def make_token(random_hex: str, queue: str) -> str:
    """A lease token that names its queue (see the module docstring)."""
    return f"{random_hex}:{queue}"


def token_queue(token: str) -> str | None:
    """The queue a lease token names, or None for a token tqd did not make."""
    _, sep, queue = token.partition(":")
    return queue if sep and queue else None
