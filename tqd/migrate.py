"""``tqd migrate``: copy every task and queue from one store to another.

This is how a user moves from one host (SQLite) to many (Redis), or back.
Both stores must be idle: no tqd process may use either while it runs. A
SQLite file's lock enforces that (opening it here holds the lock, so no
daemon can start on it meanwhile); for Redis, a store with a live registered
process (``GET /v1/workers`` would list it) is refused.

What is copied: every task in every state with its whole history (attempts,
error history, times, result, idempotency key, worker, group), each queue,
whether it is paused, its limits and the digest of the config settings last
applied to it, and the last instant each cron schedule fired for (so
no instant fires again after the move). Tasks are read newest first in pages, spilled to a
temporary file, and written oldest first in batches, so the target's
first-in-first-out order is the source's.

Tasks that are ``processing`` in the source: no process can hold their lease
any more (both stores are idle), so they are copied as the supervisor would
take them back: the lost attempt counts, a ``lost`` error is added, and the
task is ``pending`` again, or ``failed`` if that was its last attempt. The
lease fields (token, expiry, worker) are cleared. The source is never
changed.

A target that already holds tasks is refused unless ``force``: then a task
whose id the target already holds is left as it is there, and one whose
idempotency key a target task of its queue holds is skipped; both are
counted in the report. A migration that stopped half-way can so be finished
by running it again with ``force``.

Afterwards the counts per queue and state of the target are compared with
what was copied; the report says whether they match.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from tqd.config import REDIS_SCHEMES, Config, sqlite_path
from tqd.errors import ConfigError, Conflict, TqdError
from tqd.models import ERROR_HISTORY, NO_LIMITS, STATES, Task, make_error
from tqd.storage.base import SHARED, Storage
from tqd.storage.factory import create_storage

#: Tasks read per page and written per enqueue batch, by default.
DEFAULT_BATCH = 1000
#: A write batch is cut earlier when its payloads and results reach this size.
BATCH_BYTES = 8 * 1024 * 1024

Key = tuple[str, str]  # (queue, state)


class MigrationRefused(ConfigError):
    """A store is in use, not empty, or the same as the other one."""

    code = "migration_refused"


@dataclass
class MigrationReport:
    """What a migration did (``summary()`` words it for people)."""

    source: str
    target: str
    #: Tasks read from the source per (queue, state), as they were there.
    read: Counter = field(default_factory=Counter)
    #: Tasks stored in the target per (queue, state), as they are there.
    copied: Counter = field(default_factory=Counter)
    #: The source's own counts per (queue, state).
    source_counts: Counter = field(default_factory=Counter)
    #: How many tasks each target count grew by.
    target_delta: Counter = field(default_factory=Counter)
    queues: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    #: Queues whose limits (or config digest) were copied.
    limited: list[str] = field(default_factory=list)
    #: Cron schedules whose last firing was copied.
    firings: int = 0
    #: processing tasks taken back while copying: how many became pending / failed.
    revived: Counter = field(default_factory=Counter)
    skipped_existing: int = 0
    skipped_key: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every source task was read and every copied one is counted in the target."""
        return self.read == self.source_counts and self.copied == self.target_delta

    def summary(self) -> str:
        """A table per queue and state and a few lines on what else happened."""
        keys = sorted(set(self.read) | set(self.copied) | set(self.target_delta),
                      key=lambda k: (k[0], STATES.index(k[1])))
        rows = [["QUEUE", "STATE", "SOURCE", "COPIED", "TARGET +"]]
        for q, st in keys:
            rows.append([q, st, str(self.read[q, st]), str(self.copied[q, st]),
                         str(self.target_delta[q, st])])
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [f"migrated {self.source} -> {self.target}"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
        total = sum(self.copied.values())
        lines.append(f"queues: {len(self.queues)} ({', '.join(self.queues) or 'none'}); "
                     f"paused: {', '.join(self.paused) or 'none'}; "
                     f"with limits: {', '.join(self.limited) or 'none'}; "
                     f"cron firings: {self.firings}")
        if self.revived:
            lines.append(
                f"processing tasks with an open lease: {sum(self.revived.values())} "
                f"(attempt counted as lost: {self.revived['pending']} pending again, "
                f"{self.revived['failed']} out of attempts and failed)"
            )
        if self.skipped_existing or self.skipped_key:
            lines.append(f"skipped: {self.skipped_existing} already in the target (same id), "
                         f"{self.skipped_key} whose idempotency key a target task holds")
        verdict = "counts match" if self.complete else "COUNTS DIFFER (see the table)"
        lines.append(f"copied {total} tasks in {self.seconds:.1f}s; {verdict}")
        return "\n".join(lines)


def check_url(url: str, where: str) -> None:
    """Refuse a URL that names no store this tqd knows (ConfigError names ``where``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not rest.strip("/"):
        raise ConfigError(f"{where}: expected a storage URL such as sqlite:///path/tqd.db "
                          f"or redis://host:6379/0, got {url!r}")
    if scheme == "sqlite":
        folder = Path(sqlite_path(url)).parent
        if not folder.is_dir():
            raise ConfigError(f"{where}: directory {str(folder)!r} does not exist")
    elif scheme not in REDIS_SCHEMES:
        raise ConfigError(f"{where}: unsupported storage scheme {scheme!r} "
                          "(supported: sqlite, redis, rediss, unix)")


def taken_back(task: Task, now: float) -> Task:
    """A processing task as the supervisor would leave it once its lease is
    known to be gone: the attempt counts as lost; pending, or failed when it
    was the last."""
    attempts = task.attempts + 1
    error = make_error(
        "lost",
        f"the lease of worker {task.worker} was still open when the store was migrated",
        attempts, now,
    )
    dead = attempts >= task.max_attempts
    return msgspec.structs.replace(
        task,
        state="failed" if dead else "pending",
        attempts=attempts,
        errors=[*task.errors, error][-ERROR_HISTORY:],
        finished_at=now if dead else None,
        worker=None,
        lease_token=None,
        lease_expires_at=None,
    )


async def _ensure_idle(storage: Storage, url: str, now: float) -> None:
    if SHARED not in storage.capabilities:
        return  # SQLite: the lock taken at open already keeps daemons out
    live = await storage.workers(now)
    if live:
        names = ", ".join(f"{w.id} (pid {w.pid} on {w.host})" for w in live[:5])
        raise MigrationRefused(
            f"{url} is in use by {len(live)} tqd process(es): {names}; stop them first"
        )


async def _counts(storage: Storage) -> Counter:
    out: Counter = Counter()
    for q in await storage.queues():
        for state, n in q.counts.items():
            if n:
                out[q.name, state] = n
    return out


class _Spill:
    """Pages of tasks in a temporary file, read back last page first."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._pages: list[tuple[int, int]] = []
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(list[Task])

    def add(self, tasks: list[Task]) -> None:
        data = self._encoder.encode(tasks)
        self._pages.append((self._file.tell(), len(data)))
        self._file.write(data)

    def oldest_first(self):
        """Every task, in the reverse of the order they were added."""
        for offset, length in reversed(self._pages):
            self._file.seek(offset)
            yield from reversed(self._decoder.decode(self._file.read(length)))
        self._file.seek(0, 2)

    def close(self) -> None:
        self._file.close()


async def copy_store(
    source: Storage,
    target: Storage,
    *,
    source_url: str,
    target_url: str,
    now: float,
    force: bool = False,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[str], None] | None = None,
) -> MigrationReport:
    """Copy everything from ``source`` to ``target`` (both open); see the module docstring."""
    started = time.monotonic()
    report = MigrationReport(source=source_url, target=target_url)
    await _ensure_idle(source, source_url, now)
    await _ensure_idle(target, target_url, now)
    before = await _counts(target)
    if before and not force:
        raise MigrationRefused(
            f"{target_url} already holds {sum(before.values())} tasks; migrate into an empty "
            "store, or pass --force to add to it (tasks whose id it holds are left as they are)"
        )
    source_queues = await source.queues()
    report.queues = [q.name for q in source_queues]
    report.paused = sorted(q.name for q in source_queues if q.paused)
    report.source_counts = Counter(
        {(q.name, st): n for q in source_queues for st, n in q.counts.items() if n}
    )
    await target.declare_queues(report.queues)
    for q in source_queues:
        # The digest too: a daemon on the target re-applies its config file
        # only when the file changed, as it would have on the source.
        if q.limits != NO_LIMITS or q.config_digest is not None:
            await target.set_limits(q.name, q.limits, now, config_digest=q.config_digest)
            report.limited.append(q.name)

    spill = _Spill()
    try:
        cursor = None
        while True:
            page = await source.list(limit=batch, cursor=cursor)
            spill.add(page.tasks)
            for t in page.tasks:
                report.read[t.queue, t.state] += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        if progress:
            progress(f"read {sum(report.read.values())} tasks from {source_url}")
        pending: list[Task] = []
        size = 0
        for task in spill.oldest_first():
            if task.state == "processing":
                task = taken_back(task, now)
                report.revived[task.state] += 1
            pending.append(task)
            size += len(task.payload) + len(task.result or b"")
            if len(pending) >= batch or size >= BATCH_BYTES:
                await _write(target, pending, report, force)
                pending, size = [], 0
        if pending:
            await _write(target, pending, report, force)
    finally:
        spill.close()

    for name in report.paused:
        await target.set_paused(name, True)
    for name, fired in (await source.firings()).items():
        # A compare-and-set: a later firing the target holds (force) stays.
        await target.claim_firing(name, fired.instant, fired.fired_at)
        report.firings += 1
    after = await _counts(target)
    report.target_delta = Counter({k: after[k] - before[k] for k in after if after[k] - before[k]})
    report.seconds = time.monotonic() - started
    return report


async def _write(target: Storage, tasks: list[Task], report: MigrationReport, force: bool) -> None:
    try:
        results = await target.enqueue(tasks)
    except Conflict:
        if not force:
            raise
        # Some ids are in the target already: go task by task for this batch.
        results = []
        for t in tasks:
            if await target.get(t.id) is not None:
                report.skipped_existing += 1
                continue
            results += await target.enqueue([t])
    for stored, created in results:
        if created:
            report.copied[stored.queue, stored.state] += 1
        else:
            report.skipped_key += 1


async def migrate(
    source_url: str,
    target_url: str,
    config: Config | None = None,
    *,
    force: bool = False,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[str], None] | None = None,
) -> MigrationReport:
    """Open both stores, copy, close; raises ConfigError (or MigrationRefused)
    for a store that must not be used and StorageUnavailable for one that
    does not answer."""
    check_url(source_url, "--from")
    check_url(target_url, "--to")
    if source_url == target_url:
        raise MigrationRefused("--from and --to name the same store")
    if batch < 1:
        raise ConfigError("--batch: must be at least 1")
    source = create_storage(source_url, config)
    target = create_storage(target_url, config)
    opened: list[Storage] = []
    try:
        for store in (source, target):
            await store.open()
            opened.append(store)
        return await copy_store(
            source, target, source_url=_shown(source_url), target_url=_shown(target_url),
            now=time.time(), force=force, batch=batch, progress=progress,
        )
    finally:
        for store in opened:
            try:
                await store.close()
            except TqdError:
                pass


def _shown(url: str) -> str:
    """The URL without a password."""
    scheme, sep, rest = url.partition("://")
    _, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{host}" if sep else url
