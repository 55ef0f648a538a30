"""Progress reports of running tasks, coalesced and written in batches.

Handlers may report progress as often as they like; the store sees at most
one write per ``interval`` seconds from this process, carrying the latest
report of every task that reported since the last write (one round trip for
all of them). A report is written under the lease token it was made with,
so a report from a run that lost its lease changes nothing (fencing).

``report`` is for handlers in this process: fire and forget. ``submit`` is
for remote workers, whose request waits for the write and learns whether
its token still held. ``flush`` writes what is pending at once; the pool
calls it before settling a task that has a report pending, so a handler's
last report is not refused for arriving after its task ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from tqd.clock import Clock
from tqd.models import PROGRESS_MESSAGE_MAX, ProgressReport
from tqd.storage.base import Storage

log = logging.getLogger("tqd.progress")

#: Reports kept while the store does not answer; beyond it the oldest go.
MAX_PENDING = 10_000

Key = tuple[str, str]  # (task id, lease token)


class ProgressWriter:
    """Coalesces progress reports per task and writes them in batches."""

    def __init__(self, storage: Storage, clock: Clock, interval: float = 1.0) -> None:
        self._storage = storage
        self._clock = clock
        self.interval = interval
        #: (task id, token) -> (fraction, message, at): the latest of each task
        self._pending: dict[Key, tuple[float, str, float]] = {}
        self._waiters: dict[Key, list[asyncio.Future]] = {}
        self._ids: set[str] = set()  # task ids with a report pending
        self._writing: set[str] = set()  # task ids whose reports are being written
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._job: asyncio.Task | None = None
        self.writes = 0  # round trips made (for tests and benchmarks)
        self._failures = 0

    def start(self) -> None:
        """Begin writing in the background."""
        if self._job is None:
            self._job = asyncio.get_running_loop().create_task(self._run(), name="tqd-progress")

    async def close(self) -> None:
        """Write what is pending, then stop."""
        self._stop.set()
        self._wake.set()
        if self._job is not None:
            try:
                await asyncio.wait_for(self._job, timeout=5.0)
            except TimeoutError:
                log.warning("could not write %d progress reports before exit", len(self._pending))
            self._job = None

    def report(self, task_id: str, token: str, fraction: float, message: str = "") -> None:
        """Note the latest progress of a running task (on the event loop's thread)."""
        self._put((task_id, token), fraction, message)

    async def submit(self, task_id: str, token: str, fraction: float, message: str = "") -> bool:
        """Note a report and wait until it is written; False when the token
        no longer held (or the task is gone). Raises StorageUnavailable."""
        key = (task_id, token)
        self._put(key, fraction, message)
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        if self._job is None or self._job.done():
            await self._write()  # not running (stopped, or never started): write now
        return await fut

    def pending_for(self, task_ids: Iterable[str]) -> bool:
        """Whether any of these tasks has a report not yet written (or being
        written: ``flush`` waits for that write too)."""
        ids, writing = self._ids, self._writing
        if not ids and not writing:
            return False
        return any(tid in ids or tid in writing for tid in task_ids)

    async def flush(self) -> None:
        """Write every pending report now (errors are logged, not raised)."""
        try:
            await self._write()
        except Exception as err:
            self._note_failure(err)

    def _put(self, key: Key, fraction: float, message: str) -> None:
        if len(self._pending) >= MAX_PENDING and key not in self._pending:
            # The oldest report nobody waits for goes (a waiting request keeps its own).
            oldest = next((k for k in self._pending if k not in self._waiters), None)
            if oldest is not None:
                del self._pending[oldest]
        # A tuple, not a report: most are replaced before they are written.
        self._pending[key] = (fraction, message[:PROGRESS_MESSAGE_MAX], self._clock.now())
        self._ids.add(key[0])
        if not self._wake.is_set():
            self._wake.set()

    async def _write(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            waiters, self._waiters = self._waiters, {}
            self._writing, self._ids = self._ids, set()
            reports = [ProgressReport(tid, token, *latest) for (tid, token), latest in batch.items()]
            try:
                stored = await self._storage.report_progress(reports)
            except Exception as err:
                for futs in waiters.values():
                    for fut in futs:
                        if not fut.done():
                            fut.set_exception(err)
                # Keep the reports (a newer one of the same task wins) for the next write.
                for key, latest in batch.items():
                    self._pending.setdefault(key, latest)
                    self._ids.add(key[0])
                raise
            finally:
                self._writing = set()
            self.writes += 1
            for key, ok in zip(batch, stored, strict=True):
                for fut in waiters.get(key, ()):
                    if not fut.done():
                        fut.set_result(ok)

    def _note_failure(self, err: Exception) -> None:
        self._failures += 1
        if self._failures == 1 or self._failures % 30 == 0:
            log.warning("writing progress reports failed (%s: %s); retrying",
                        type(err).__name__, err)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            delay = self.interval
            try:
                await self._write()
                self._failures = 0
            except Exception as err:
                self._note_failure(err)
                delay = min(5.0, self.interval * 2 ** min(self._failures, 3))
                self._wake.set()  # try again after the delay
            if self._stop.is_set():
                if not self._pending or self._failures:
                    return
                continue
            # At most one write per interval: reports meanwhile coalesce.
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except TimeoutError:
                pass
