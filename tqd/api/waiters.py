"""Callers waiting for tasks to finish (``GET /v1/tasks/{id}?wait=``).

Listens to the store's change events, so a task finished by any process that
shares the store wakes its waiters at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tqd.models import DELETED, FINISHED_STATES, Change, QueueChange

_ENDS = FINISHED_STATES | {DELETED}


class Waiters:
    """Futures per task id, resolved when the task ends or is deleted."""

    def __init__(self) -> None:
        self._by_id: dict[str, list[asyncio.Future]] = {}
        self._closed = False

    def watch(self, task_id: str) -> asyncio.Future:
        """A future that resolves when ``task_id`` ends; call ``forget`` after."""
        fut = asyncio.get_running_loop().create_future()
        if self._closed:
            fut.set_result(None)
            return fut
        self._by_id.setdefault(task_id, []).append(fut)
        return fut

    def close(self) -> None:
        """Resolve every waiter now and every later one at once: the daemon
        stops, and a long poll must not hold its exit (the caller answers
        with the task as it is)."""
        self._closed = True
        for futs in self._by_id.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    def forget(self, task_id: str, fut: asyncio.Future) -> None:
        """Stop watching (whether or not the future resolved)."""
        futs = self._by_id.get(task_id)
        if futs is None:
            return
        if fut in futs:
            futs.remove(fut)
        if not futs:
            del self._by_id[task_id]

    def on_changes(self, changes: Sequence[Change | QueueChange]) -> None:
        """Storage listener."""
        if not self._by_id:
            return
        for c in changes:
            if type(c) is Change and c.state in _ENDS:
                for fut in self._by_id.get(c.id, ()):
                    if not fut.done():
                        fut.set_result(c.state)
