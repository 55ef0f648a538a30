"""What every handler kind shares: the context a task runs with, the way a
handler reports a failure, and the Handler protocol the pool calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from tqd.models import PROGRESS_MESSAGE_MAX, Task, check_fraction


class TaskFailed(Exception):
    """Raise from a handler to fail the attempt with a message.

    ``retry=False`` sends the task straight to ``failed`` (dead letters)
    whatever attempts remain. ``delay`` (seconds) replaces the backoff for
    the next attempt, e.g. from a Retry-After. ``hold`` (seconds) asks the
    pool to lease nothing more from the task's queue for that long: what
    the queue's tasks call is pushing back. ``kind`` labels the error.
    """

    def __init__(
        self,
        message: str,
        *,
        retry: bool = True,
        delay: float | None = None,
        kind: str = "error",
        hold: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.delay = delay
        self.kind = kind
        self.hold = hold


class RawJSON(bytes):
    """A result that is already encoded JSON; stored as is, not re-encoded."""


class ProgressSink(Protocol):
    """Where a task's progress goes (the worker pool): ``task_progress`` is
    called on the thread of ``loop`` (``loop_thread``)."""

    loop: asyncio.AbstractEventLoop
    loop_thread: int

    def task_progress(self, task: Task, fraction: float, message: str) -> None: ...


class LatestOnLoop:
    """Hands the latest of a stream of values to ``deliver`` on ``loop``,
    from any thread, queueing at most one loop callback at a time however
    fast the values come (a chatty handler thread cannot flood the loop).
    The value is stored before the flag is read, and the callback clears the
    flag before it reads the value, so the last value is never left behind.
    """

    __slots__ = ("_deliver", "_latest", "_loop", "_queued", "_thread")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[..., None],
        loop_thread: int | None = None,
    ) -> None:
        """``loop_thread`` is the thread running ``loop`` (default: this one)."""
        self._loop = loop
        self._thread = threading.get_ident() if loop_thread is None else loop_thread
        self._deliver = deliver
        self._latest: tuple | None = None
        self._queued = False

    def put(self, *value: Any) -> None:
        """Deliver ``value`` now when called on the loop's thread, else soon."""
        if threading.get_ident() == self._thread:
            self._deliver(*value)
            return
        self._latest = value
        if not self._queued:
            self._queued = True
            try:
                self._loop.call_soon_threadsafe(self._run)
            except RuntimeError:  # the loop is closed: nobody listens any more
                self._queued = False

    def _run(self) -> None:
        self._queued = False
        latest, self._latest = self._latest, None
        if latest is not None:
            self._deliver(*latest)


class TaskContext:
    """What a handler knows about the task it runs.

    ``payload`` is decoded on first use; handlers that ignore it pay nothing.
    ``progress()`` reports how far the handler got.
    """

    __slots__ = ("_hop", "_payload", "_sink", "_task")

    def __init__(self, task: Task, sink: ProgressSink | None = None) -> None:
        """``sink`` receives the progress reports (None: they go nowhere)."""
        self._task = task
        self._payload: Any = _UNSET
        self._sink = sink
        self._hop: LatestOnLoop | None = None  # made at the first report

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress: ``fraction`` from 0 to 1 and a short message.

        Callable from async handlers and from sync handlers in their thread
        alike, as often as wanted: only the latest report counts, and the
        store sees at most one write per task per second or so. ValueError
        for a fraction outside [0, 1].
        """
        value = check_fraction(fraction)
        sink = self._sink
        if sink is None:
            return
        if self._hop is None:
            self._hop = LatestOnLoop(sink.loop, self._report, sink.loop_thread)
        self._hop.put(value, message if type(message) is str and len(message) <= PROGRESS_MESSAGE_MAX
                      else str(message)[:PROGRESS_MESSAGE_MAX])

    def _report(self, fraction: float, message: str) -> None:
        assert self._sink is not None
        self._sink.task_progress(self._task, fraction, message)

    @property
    def task_id(self) -> str:
        return self._task.id

    @property
    def name(self) -> str:
        return self._task.name

    @property
    def queue(self) -> str:
        return self._task.queue

    @property
    def attempt(self) -> int:
        """The number of this attempt, from 1."""
        return self._task.attempts + 1

    @property
    def max_attempts(self) -> int:
        return self._task.max_attempts

    @property
    def payload(self) -> Any:
        """The task's payload as Python objects."""
        if self._payload is _UNSET:
            self._payload = orjson.loads(self._task.payload)
        return self._payload

    @property
    def raw_payload(self) -> bytes:
        """The task's payload as encoded JSON."""
        return self._task.payload


_UNSET = object()


class Handler(Protocol):
    """Runs tasks of one name. Returns a JSON-able result (or RawJSON).

    Raising TaskFailed fails the attempt with its message; any other
    exception fails it as retryable with the exception's type and message.
    Cancellation (timeout, cancel, lost lease, shutdown) arrives as
    asyncio.CancelledError and must not be swallowed.
    """

    async def run(self, ctx: TaskContext) -> Any: ...

    async def close(self) -> None: ...
