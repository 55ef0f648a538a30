"""The threads that own SQLite connections: one writer, one reader.

The writer takes every operation waiting in its queue, runs them in one
transaction (each inside a savepoint, so one failing operation does not undo
the others) and commits once: many concurrent enqueues cost one fsync. Only
after that commit are the callers' futures resolved, so nothing is
acknowledged before it is durable. Results and change events go back to the
event loop in one call per group, changes first.

The reader runs read-only queries on its own connection; in WAL mode they do
not wait for the writer and see every committed write.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from tqd.errors import StorageUnavailable, TqdError
from tqd.logs import Throttle

log = logging.getLogger("tqd.storage.sqlite")

# An operation: fn(conn, changes, *args) -> result. It appends the change
# events it causes to ``changes``; they are emitted only if it commits.
Operation = Callable[..., Any]
_STOP = object()


class Connection(sqlite3.Connection):
    """A tqd connection to the file. ``heads`` is the writer's copy of
    group_heads (heads.HeadCache); the operations that use it run on the
    writer's connection only."""

    heads: Any = None


def connect(path: str, *, synchronous: str, readonly: bool = False) -> Connection:
    """Open ``path`` with the settings every tqd connection uses."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=30, factory=Connection
    )
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of page cache
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


class _Worker(threading.Thread):
    """A thread that runs operations on its own connection, in groups."""

    transactional = False

    def __init__(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        emit: Callable[[Sequence[Any]], None],
        max_group: int,
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._conn = conn
        self._loop = loop
        self._emit = emit
        self._max_group = max_group
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # A plain flag, not Thread.is_alive(), which takes a lock per call.
        self._accepting = True
        # SQLite's I/O errors (a full disk, a file gone) fail every operation
        # while they last: one line as they begin, then one a minute with
        # their number, written on the event loop (Throttle lives there).
        self._errors = Throttle(log, level=logging.ERROR)

    def submit(self, fn: Operation, *args: Any) -> asyncio.Future:
        """Queue ``fn`` to run on this thread; the future resolves after it commits."""
        fut = self._loop.create_future()
        if not self._accepting:
            fut.set_exception(StorageUnavailable("storage: the SQLite store is closed"))
            return fut
        self._queue.put((fn, args, fut))
        return fut

    def stop(self) -> None:
        """Finish what is queued, then end the thread (join it afterwards)."""
        self._accepting = False
        self._queue.put(_STOP)

    def close_log(self) -> None:
        """Write the count of errors not yet logged (on the event loop, after join)."""
        self._errors.close()

    def _failed(self, err: BaseException) -> BaseException:
        """The error to hand the caller for ``err``; SQLite's I/O trouble is logged."""
        error = _translate(err)
        if isinstance(error, StorageUnavailable) and error is not err:
            self._log_error("SQLite error: %s", err)
        return error

    def _log_error(self, msg: str, err: BaseException) -> None:
        try:
            self._loop.call_soon_threadsafe(self._errors.log, msg, str(err))
        except RuntimeError:  # the loop is closed: nobody to throttle for
            log.error(msg, err)

    def run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                group = [first]
                stop = False
                while len(group) < self._max_group:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    group.append(item)
                self._run_group(group)
                if stop:
                    return
        finally:
            self._conn.close()

    def _run_group(self, group: list) -> None:
        results: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        changes: list[Any] = []
        conn = self._conn
        if not self.transactional:
            for fn, args, fut in group:
                try:
                    results.append((fut, fn(conn, changes, *args), None))
                except BaseException as err:  # delivered to the caller
                    results.append((fut, None, self._failed(err)))
            self._deliver(results, changes)
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            self._fail_all(group, err)
            return
        for run in _runs(group):
            if run.merged is None:
                fn, args, fut = run.calls[0]
                self._run_one(conn, fn, args, fut, results, changes)
                continue
            op_changes: list[Any] = []
            try:
                merged = _in_savepoint(conn, run.fn, op_changes, (run.merged,))
            except BaseException:
                # The merged call failed: run each call on its own, so only
                # the operation at fault fails.
                for fn, args, fut in run.calls:
                    self._run_one(conn, fn, args, fut, results, changes)
                continue
            changes.extend(op_changes)
            offset = 0
            for _, args, fut in run.calls:
                n = len(args[0])
                results.append((fut, merged[offset : offset + n], None))
                offset += n
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if conn.heads is not None:
                conn.heads.lost()  # it followed writes that are now undone
            self._fail_all(group, err)
            return
        self._deliver(results, changes)

    def _run_one(self, conn: sqlite3.Connection, fn: Operation, args: tuple, fut: asyncio.Future,
                 results: list, changes: list) -> None:
        op_changes: list[Any] = []
        try:
            result = _in_savepoint(conn, fn, op_changes, args)
        except BaseException as err:
            results.append((fut, None, self._failed(err)))
            return
        changes.extend(op_changes)
        results.append((fut, result, None))

    def _fail_all(self, group: list, err: BaseException) -> None:
        self._log_error("SQLite commit failed: %s", err)
        error = _translate(err)
        self._deliver([(fut, None, error) for _, _, fut in group], [])

    def _deliver(self, results: list, changes: list) -> None:
        try:
            self._loop.call_soon_threadsafe(_resolve, results, changes, self._emit)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


class Writer(_Worker):
    """The single writer: group commit in one transaction per group."""

    transactional = True


class Reader(_Worker):
    """The reader: read-only queries, each on its own."""

    transactional = False


def mergeable(fn: Operation) -> Operation:
    """Mark an operation whose only argument is a list of items and whose
    result is a list aligned with it: consecutive calls in one group then run
    as one call on the joined list (one statement instead of one per call)."""
    fn.mergeable = True  # type: ignore[attr-defined]
    return fn


class _Run:
    """Consecutive calls of one operation in a group; ``merged`` joins the
    item lists of mergeable calls (None: run the single call as it is)."""

    __slots__ = ("calls", "fn", "merged")

    def __init__(self, fn: Operation, call: tuple, merged: list | None) -> None:
        self.fn = fn
        self.calls = [call]
        self.merged = merged


def _runs(group: list) -> list[_Run]:
    runs: list[_Run] = []
    for call in group:
        fn, args, _ = call
        if not getattr(fn, "mergeable", False):
            runs.append(_Run(fn, call, None))
        elif runs and runs[-1].fn is fn and runs[-1].merged is not None:
            runs[-1].calls.append(call)
            runs[-1].merged.extend(args[0])
        else:
            runs.append(_Run(fn, call, list(args[0])))
    return runs


def _in_savepoint(conn: sqlite3.Connection, fn: Operation, changes: list, args: tuple) -> Any:
    """Run one operation so that raising undoes exactly its own writes."""
    heads = getattr(conn, "heads", None)
    epoch = None if heads is None else heads.epoch
    conn.execute("SAVEPOINT op")
    try:
        result = fn(conn, changes, *args)
    except BaseException:
        try:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
        except sqlite3.Error:
            pass
        if heads is not None and heads.epoch != epoch:
            heads.lost()  # it followed writes that are now undone
        raise
    conn.execute("RELEASE op")
    return result


def _resolve(results: list, changes: list, emit: Callable[[Sequence[Any]], None]) -> None:
    # Changes first: a listener (the pool) must learn of new work no later
    # than the caller that enqueued it learns of its commit.
    if changes:
        emit(changes)
    for fut, result, error in results:
        if fut.done():
            continue
        if error is None:
            fut.set_result(result)
        else:
            fut.set_exception(error)


def _translate(err: BaseException) -> BaseException:
    """Our own errors pass; SQLite's I/O trouble becomes StorageUnavailable."""
    if isinstance(err, TqdError):
        return err
    if isinstance(err, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
        err, sqlite3.IntegrityError
    ):
        return StorageUnavailable(f"storage: SQLite error: {err}")
    return err
