"""The SQLite schema as numbered migrations.

``PRAGMA user_version`` holds the number of migrations applied. Each
migration runs in its own transaction; a newer file than this tqd knows is
refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

from tqd.errors import ConfigError

# Columns in the order of the fields of tqd.models.Task, so a row maps to a
# Task positionally.
TASK_COLUMNS = (
    "id, name, queue, payload, priority, state, attempts, max_attempts, attempt_budget, "
    "created_at, run_at, started_at, finished_at, result, errors, idempotency_key, "
    "timeout, visibility_timeout, worker, lease_token, lease_expires_at, "
    "unique_key, unique_until, progress, grp"
)

MIGRATIONS: list[str] = [
    # 1: tasks, per-queue counts, queues, processes.
    """
    CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY,          -- insertion order: FIFO and paging
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        queue TEXT NOT NULL,
        payload BLOB NOT NULL,            -- encoded JSON
        priority INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        attempt_budget INTEGER NOT NULL,
        created_at REAL NOT NULL,
        run_at REAL,
        started_at REAL,
        finished_at REAL,
        result BLOB,                      -- encoded JSON
        errors BLOB,                      -- encoded JSON list, newest last
        idempotency_key TEXT,
        timeout REAL,
        visibility_timeout REAL NOT NULL,
        worker TEXT,
        lease_token TEXT,
        lease_expires_at REAL
    );
    CREATE UNIQUE INDEX tasks_id ON tasks(id);
    -- Idempotency keys are unique per queue (as in Redis, where a queue's
    -- keys live in one hash slot).
    CREATE UNIQUE INDEX tasks_idempotency ON tasks(queue, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    -- Leasing: the next pending task of a queue in O(log n).
    CREATE INDEX tasks_pending ON tasks(queue, priority DESC, seq) WHERE state = 'pending';
    CREATE INDEX tasks_scheduled ON tasks(run_at) WHERE state = 'scheduled';
    CREATE INDEX tasks_leases ON tasks(lease_expires_at) WHERE state = 'processing';
    CREATE INDEX tasks_finished ON tasks(state, finished_at)
        WHERE state IN ('completed', 'failed', 'cancelled');
    -- Listing newest first. Only (queue, state, seq) changes with every
    -- transition; it serves queue+state directly, a queue alone by merging
    -- its six states, a state alone by merging the queues that hold any.
    -- (name, seq) never changes after insert; name filters walk it.
    CREATE INDEX tasks_by_queue ON tasks(queue, state, seq);
    CREATE INDEX tasks_by_name ON tasks(name, seq);

    -- Tasks per queue and state. Every operation adjusts these rows in the
    -- same transaction (once per batch, not per task), so counting never
    -- scans tasks.
    CREATE TABLE queue_counts (
        queue TEXT NOT NULL,
        state TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (queue, state)
    ) WITHOUT ROWID;

    CREATE TABLE queues (
        name TEXT PRIMARY KEY,
        paused INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;

    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        info BLOB NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: statistics for charts, one row per (resolution, queue, bucket start);
    # old rows are deleted as new ones are recorded (stats.py).
    """
    CREATE TABLE stats (
        step INTEGER NOT NULL,            -- seconds per bucket: 1 or 60
        queue TEXT NOT NULL,              -- a queue, or '*' for all queues
        t INTEGER NOT NULL,               -- bucket start, epoch seconds
        enqueued INTEGER NOT NULL,
        completed INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        latency BLOB,                     -- JSON {histogram bucket: count}
        PRIMARY KEY (step, queue, t)
    ) WITHOUT ROWID;
    CREATE INDEX stats_age ON stats(step, t);
    """,
    # 3: unique tasks, progress reports, cron firings.
    """
    ALTER TABLE tasks ADD COLUMN unique_key TEXT;
    ALTER TABLE tasks ADD COLUMN unique_until REAL;
    ALTER TABLE tasks ADD COLUMN progress BLOB;   -- encoded JSON, the latest report
    -- The live twin of a unique task: same queue, name and key.
    CREATE INDEX tasks_unique ON tasks(queue, name, unique_key) WHERE unique_key IS NOT NULL;

    -- The last instant each cron schedule fired for; claimed by compare-and-set.
    CREATE TABLE cron_firings (
        name TEXT PRIMARY KEY,
        instant REAL NOT NULL,
        fired_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: queue limits and fair groups (see Storage.lease).
    """
    ALTER TABLE tasks ADD COLUMN grp TEXT;        -- fairness group; NULL: none
    -- Ungrouped pending tasks keep the plain leasing index, now partial so a
    -- lease of ungrouped tasks never walks past a group's backlog.
    DROP INDEX tasks_pending;
    CREATE INDEX tasks_pending ON tasks(queue, priority DESC, seq)
        WHERE state = 'pending' AND grp IS NULL;
    -- Grouped pending tasks: the next group after a name is one seek
    -- (skip-scan over distinct groups), and a group's next task another.
    CREATE INDEX tasks_group_pending ON tasks(queue, grp, priority DESC, seq)
        WHERE state = 'pending' AND grp IS NOT NULL;
    -- Processing tasks of one group, for group_concurrency.
    CREATE INDEX tasks_group_processing ON tasks(queue, grp)
        WHERE state = 'processing' AND grp IS NOT NULL;

    -- Limits (NULL: unlimited), the rate bucket (tokens held at rate_at;
    -- NULL tokens: full), the last group a lease served (NULL: none yet;
    -- '' : the tasks without a group) and the config settings last applied.
    ALTER TABLE queues ADD COLUMN concurrency INTEGER;
    ALTER TABLE queues ADD COLUMN rate_limit INTEGER;
    ALTER TABLE queues ADD COLUMN rate_interval REAL;
    ALTER TABLE queues ADD COLUMN rate_burst INTEGER;
    ALTER TABLE queues ADD COLUMN group_concurrency INTEGER;
    ALTER TABLE queues ADD COLUMN rate_tokens REAL;
    ALTER TABLE queues ADD COLUMN rate_at REAL;
    ALTER TABLE queues ADD COLUMN last_group TEXT;
    ALTER TABLE queues ADD COLUMN config_digest TEXT;
    """,
    # 5: the finished-task index keyed by a plain test. Its predicate was
    # "state IN ('completed', 'failed', 'cancelled')", which the janitor's
    # "state = ? AND finished_at < ?" cannot be proven to imply, so the
    # janitor scanned the whole table and sorted; and SQLite evaluates an IN
    # list by building a small table, for every row a lease or settle
    # changes (a third of a settle's cost). finished_at is set exactly when
    # a task finishes (and cleared when it is revived).
    """
    DROP INDEX tasks_finished;
    CREATE INDEX tasks_finished ON tasks(state, finished_at) WHERE finished_at IS NOT NULL;
    """,
    # 6: a grouped lease no longer rewrites an index entry in every group it
    # serves. Migration 4's tasks_group_pending lost an entry per task leased,
    # and a lease that goes round 100 groups touched 100 of its pages (one
    # per group): each commit wrote ~100 pages where an ungrouped lease writes
    # ~20. Now the index of grouped tasks is not partial on state, so a lease
    # leaves it alone, and where each group's pending tasks begin is kept in
    # group_heads, one small row per (queue, group, priority). groups.py says
    # which operations keep it.
    """
    -- 1: the task joined its group's pending tasks after its enqueue (it
    -- came back to pending, or was enqueued in another state, or was pending
    -- when this migration ran), or it was cancelled; NULL: it was enqueued
    -- pending ("fresh") and has not left pending other than by a lease.
    -- Only grouped tasks set it.
    ALTER TABLE tasks ADD COLUMN rejoin INTEGER;
    DROP INDEX tasks_group_pending;
    -- The grouped tasks pending now count as rejoined: they are read from
    -- tasks_group_rejoin, and every level's fresh tasks (enqueued from now
    -- on) come after every entry of tasks_group_fresh, so no head is needed
    -- yet. (This writes the backlog, not the history of finished tasks.)
    UPDATE tasks SET rejoin = 1 WHERE grp IS NOT NULL AND state = 'pending';
    -- Fresh grouped tasks in lease order, whatever their state: leasing or
    -- settling them changes no entry. Leases take each priority level's
    -- fresh tasks in order, so the entries before its head (group_heads) are
    -- never read again; those from it on are the level's fresh pending
    -- tasks (any other way out of pending takes a task out of this index).
    CREATE INDEX tasks_group_fresh ON tasks(queue, grp, priority DESC, seq)
        WHERE grp IS NOT NULL AND rejoin IS NULL;
    -- Rejoined grouped tasks while pending (released, reclaimed, retried,
    -- due): they may sort before their group's head, so they are read here.
    CREATE INDEX tasks_group_rejoin ON tasks(queue, grp, priority DESC, seq)
        WHERE grp IS NOT NULL AND rejoin = 1 AND state = 'pending';
    -- For each priority level of each group that has fresh pending tasks,
    -- the first of them (the smallest seq); no row: none. (seq is NULL only
    -- inside an operation, between finding no next head and deleting the row.)
    CREATE TABLE group_heads (
        queue TEXT NOT NULL,
        grp TEXT NOT NULL,
        priority INTEGER NOT NULL,
        seq INTEGER,
        PRIMARY KEY (queue, grp, priority)
    ) WITHOUT ROWID;
    -- Levels whose head was just found gone, to delete without a scan.
    CREATE INDEX group_heads_gone ON group_heads(queue) WHERE seq IS NULL;
    """,
    # 7: group_heads may lag behind the tasks it points at (the writer keeps
    # the true heads in memory, sqlite/heads.py, and catches up on open). A
    # tqd from before would trust a lagging row and never lease past it, so
    # the new version number alone keeps it off such a file.
    """
    -- no statement
    """,
]


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Apply the migrations this file lacks; return the schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise ConfigError(
            f"storage: {path!r} has schema version {version}, newer than this tqd "
            f"knows ({len(MIGRATIONS)}); upgrade tqd"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (triggers hold semicolons inside)."""
    out: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        current.append(line)
        joined = "\n".join(current)
        if sqlite3.complete_statement(joined):
            out.append(joined)
            current = []
    return out
