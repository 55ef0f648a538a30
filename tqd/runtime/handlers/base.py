"""What every handler kind shares: the context a task runs with, the way a
handler reports a failure, and the Handler protocol the pool calls."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from tqd.models import Task


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


class TaskContext:
    """What a handler knows about the task it runs.

    ``payload`` is decoded on first use; handlers that ignore it pay nothing.
    """

    __slots__ = ("_payload", "_task")

    def __init__(self, task: Task) -> None:
        self._task = task
        self._payload: Any = _UNSET

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
