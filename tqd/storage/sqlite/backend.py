"""The embedded store: one SQLite file in WAL mode.

Writes go through one writer thread with group commit, reads through one
reader thread (see threads.py); the operations themselves are in ops.py
and consume.py. Only one tqd process may use a file at a time; a
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

from tqd.errors import BadRequest, ConfigError, StorageUnavailable
from tqd.models import (
    Firing,
    Outcome,
    ProgressReport,
    QueueInfo,
    QueueLimits,
    StatsBucket,
    Task,
    WorkerInfo,
)
from tqd.storage.base import DURABLE_FSYNC, EnqueueResult, Leased, Page, Storage
from tqd.storage.sqlite import consume, ops
from tqd.storage.sqlite.heads import HeadCache
from tqd.storage.sqlite.schema import migrate
from tqd.storage.sqlite.stats import op_record_stats, op_stats
from tqd.storage.sqlite.threads import Reader, Writer, connect


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
        # Without the lock another handle may write the file (tests stand in
        # for a second process that way): then nothing may stay in memory.
        wconn.heads = HeadCache(shared=not self.exclusive)
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
            t.close_log()
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
        await self._read(ops.op_ping)

    # -- contract -----------------------------------------------------------

    async def _enqueue(self, tasks: Sequence[Task]) -> list[EnqueueResult]:
        return await self._write(ops.op_enqueue, tasks)

    async def _lease(
        self, queue: str, limit: int, worker: str, now: float, visibility: float | None
    ) -> Leased:
        return await self._write(consume.op_lease, queue, limit, worker, now, visibility)

    async def _extend(
        self, leases: Sequence[tuple[str, str]], now: float, visibility: float | None
    ) -> list[bool]:
        return await self._write(consume.op_extend, leases, now, visibility)

    async def _settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        return await self._write(consume.op_settle, outcomes, now)

    async def _report_progress(self, reports: Sequence[ProgressReport]) -> list[bool]:
        return await self._write(consume.op_progress, reports)

    async def _claim_firing(self, schedule: str, instant: float, now: float) -> bool:
        return await self._write(ops.op_claim_firing, schedule, instant, now)

    async def firings(self) -> dict[str, Firing]:
        return await self._read(ops.op_firings)

    async def _reclaim_expired(self, now: float, limit: int) -> list[Task]:
        return await self._write(ops.op_reclaim, "lease_expires_at < ?", (now,), now, limit)

    async def _reclaim_worker(self, worker: str, now: float) -> list[Task]:
        return await self._write(ops.op_reclaim, "worker = ?", (worker,), now, -1)

    async def _reclaim_orphans(self, now: float) -> list[Task]:
        return await self._write(ops.op_reclaim, "1 = 1", (), now, -1)

    async def _promote_due(self, now: float, limit: int) -> int:
        return await self._write(ops.op_promote, now, limit)

    async def next_run_at(self) -> float | None:
        return await self._read(ops.op_next_run_at)

    async def _expire_finished(self, state: str, before: float, limit: int) -> int:
        return await self._write(ops.op_expire, state, before, limit)

    async def get(self, task_id: str) -> Task | None:
        return await self._read(ops.op_get, task_id)

    async def _list(
        self, state: str | None, queue: str | None, name: str | None, limit: int, cursor: str | None
    ) -> Page:
        before = None
        if cursor is not None:
            try:
                before = int(cursor)
            except ValueError:
                raise BadRequest("cursor: not a cursor returned by this API") from None
            if not 0 < before < 2**63:  # SQLite integers are 64-bit; larger ones raise
                raise BadRequest("cursor: not a cursor returned by this API")
        return await self._read(ops.op_list, state, queue, name, limit, before)

    async def _cancel(self, task_id: str, now: float) -> Task:
        return await self._write(ops.op_cancel, task_id, now)

    async def _retry(self, task_id: str, now: float) -> Task:
        return await self._write(ops.op_retry, task_id, now)

    async def _delete(self, task_id: str) -> None:
        await self._write(ops.op_delete, task_id)

    async def declare_queues(self, names: Sequence[str]) -> None:
        if names:
            await self._write(ops.op_declare, list(names))

    async def queues(self) -> list[QueueInfo]:
        return await self._read(ops.op_queues, None)

    async def _queue(self, name: str) -> QueueInfo | None:
        found = await self._read(ops.op_queues, name)
        return found[0] if found else None

    async def _set_paused(self, name: str, paused: bool) -> None:
        await self._write(ops.op_set_paused, name, paused)

    async def paused_queues(self) -> set[str]:
        return await self._read(ops.op_paused)

    async def _set_limits(
        self, name: str, limits: QueueLimits, now: float, config_digest: str | None,
        expected: QueueLimits | None,
    ) -> None:
        await self._write(ops.op_set_limits, name, limits, now, config_digest, expected)

    async def _purge(self, queue: str, state: str, limit: int) -> int:
        return await self._write(ops.op_purge, queue, state, limit)

    async def _redrive(self, queue: str, now: float, limit: int) -> int:
        return await self._write(ops.op_redrive, queue, now, limit)

    async def register_worker(self, info: WorkerInfo, ttl: float, now: float) -> None:
        await self._write(ops.op_register, info.id, msgspec.json.encode(info), now + ttl)

    async def unregister_worker(self, worker_id: str) -> None:
        await self._write(ops.op_unregister, worker_id)

    async def workers(self, now: float) -> list[WorkerInfo]:
        rows = await self._read(ops.op_workers, now)
        return [msgspec.json.decode(r, type=WorkerInfo) for r in rows]

    async def _record_stats(self, buckets: Sequence[StatsBucket], now: float) -> None:
        await self._write(op_record_stats, buckets, now)

    async def _stats(self, step: int, since: int, until: int, queue: str) -> list[StatsBucket]:
        return await self._read(op_stats, step, since, until, queue)
