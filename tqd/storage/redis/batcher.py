"""Group submit: concurrent enqueues of one queue share one round trip.

Each enqueue through the API is one small batch (often one task). Sent one by
one, each costs a round trip, a script run and a published message, which
every process then receives. ``EnqueueBatcher`` sends a caller's batch at
once when nothing of its queue is in flight; batches that arrive while one
is in flight wait and go together in the next script run, as SQLite's group
commit does. Under light load nothing waits; under heavy load one round trip
carries many callers' tasks.

Every caller still gets the result of its own batch: created or matched by
idempotency key (keys also match across the callers of one group, exactly as
if their calls had run one after the other), or its own error. A group that
fails for a duplicate id is sent again caller by caller, so only the caller
whose id collided gets the Conflict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from tqd.errors import Conflict
from tqd.models import Task
from tqd.storage.base import EnqueueResult

Send = Callable[[Sequence[Task]], Awaitable[list[EnqueueResult]]]

#: Most tasks sent together in one script run.
MAX_GROUP = 1000


class EnqueueBatcher:
    """Coalesces enqueues of single-queue batches, per queue (see the module docstring)."""

    def __init__(self, send: Send, max_group: int = MAX_GROUP) -> None:
        self._send = send
        self._max_group = max_group
        self._waiting: dict[str, list[tuple[Sequence[Task], asyncio.Future]]] = {}
        self._busy: set[str] = set()
        self._jobs: set[asyncio.Task] = set()  # strong references while they run

    async def submit(self, queue: str, tasks: Sequence[Task]) -> list[EnqueueResult]:
        """Store ``tasks`` (all of ``queue``) and return their results, as enqueue does."""
        if queue not in self._busy:
            self._busy.add(queue)
            try:
                return await self._send(tasks)
            finally:
                self._next(queue)
        fut = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(queue, []).append((tasks, fut))
        return await fut

    def _next(self, queue: str) -> None:
        """The round trip of ``queue`` ended: send what waited, or go idle."""
        waiting = self._waiting.get(queue)
        if not waiting:
            self._busy.discard(queue)
            self._waiting.pop(queue, None)
            return
        group, size = [], 0
        while waiting and (not group or size + len(waiting[0][0]) <= self._max_group):
            tasks, fut = waiting.pop(0)
            if not fut.done():  # a caller that went away is not sent
                group.append((tasks, fut))
                size += len(tasks)
        if not group:
            self._next(queue)
            return
        job = asyncio.get_running_loop().create_task(self._send_group(queue, group))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _send_group(self, queue: str, group: list[tuple[Sequence[Task], asyncio.Future]]) -> None:
        try:
            if len(group) == 1:
                await _settle_one(self._send, *group[0])
                return
            tasks = [t for batch, _ in group for t in batch]
            try:
                results = await self._send(tasks)
            except Conflict:
                # A duplicate id refused the whole group: each caller alone,
                # so only the one whose id collided hears of it.
                for batch, fut in group:
                    await _settle_one(self._send, batch, fut)
                return
            except Exception as err:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(err)
                return
            start = 0
            for batch, fut in group:
                if not fut.done():
                    fut.set_result(results[start : start + len(batch)])
                start += len(batch)
        finally:
            self._next(queue)


async def _settle_one(send: Send, tasks: Sequence[Task], fut: asyncio.Future) -> None:
    try:
        result = await send(tasks)
    except Exception as err:
        if not fut.done():
            fut.set_exception(err)
        return
    if not fut.done():
        fut.set_result(result)
