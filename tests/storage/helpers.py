"""Small tools shared by the conformance tests; they use only the contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from tqd.clock import FakeClock
from tqd.ids import IdGenerator
from tqd.models import STATES, Outcome, Task, make_error
from tqd.storage.base import SHARED, Storage


class TaskMaker:
    """Builds tasks complete with defaults, as the API hands them to enqueue."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._ids = IdGenerator()

    def __call__(
        self,
        name: str = "job",
        queue: str = "q",
        *,
        payload: bytes = b"null",
        priority: int = 0,
        delay: float | None = None,
        key: str | None = None,
        max_attempts: int = 3,
        visibility_timeout: float = 30.0,
        id: str | None = None,
        unique: str | None = None,
        unique_for: float = 300.0,
        group: str | None = None,
    ) -> Task:
        """``unique`` makes a unique task with that key, held ``unique_for`` s."""
        now = self.clock.now()
        return Task(
            id=id or self._ids.new(now),
            name=name,
            queue=queue,
            payload=payload,
            priority=priority,
            state="scheduled" if delay else "pending",
            run_at=now + delay if delay else None,
            max_attempts=max_attempts,
            attempt_budget=max_attempts,
            created_at=now,
            idempotency_key=key,
            visibility_timeout=visibility_timeout,
            unique_key=unique,
            unique_until=now + unique_for if unique is not None else None,
            group=group,
        )

    def many(self, n: int, **kwargs: Any) -> list[Task]:
        return [self(**kwargs) for _ in range(n)]


async def put(storage: Storage, *tasks: Task) -> list[Task]:
    """Enqueue ``tasks`` (all new) and return them as stored."""
    results = await storage.enqueue(tasks)
    assert all(r.created for r in results)
    return [r.task for r in results]


async def lease_one(storage: Storage, now: float, queue: str = "q", worker: str = "w1") -> Task:
    """Lease exactly one task of ``queue``."""
    leased = await storage.lease(queue, 1, worker, now)
    assert len(leased) == 1, leased
    return leased[0]


def complete(task: Task, result: bytes = b'"ok"') -> Outcome:
    return Outcome(task_id=task.id, token=task.lease_token, kind="complete", result=result)


def fail(
    task: Task, retry_at: float | None = None, message: str = "boom", at: float = 0.0
) -> Outcome:
    """A failure of the attempt ``task`` is running, as the pool reports it."""
    error = make_error("exception", message, task.attempt, at)
    return Outcome(
        task_id=task.id, token=task.lease_token, kind="fail", error=error, retry_at=retry_at
    )


def release(task: Task) -> Outcome:
    return Outcome(task_id=task.id, token=task.lease_token, kind="release")


async def counts(storage: Storage, queue: str = "q") -> dict[str, int]:
    """The non-zero counts of ``queue``, by state."""
    info = await storage.queue(queue)
    assert set(info.counts) <= set(STATES)
    return {state: n for state, n in info.counts.items() if n}


async def all_tasks(storage: Storage, **filters: Any) -> list[Task]:
    """Every task matching ``filters``, newest first, following cursors."""
    out: list[Task] = []
    cursor = None
    while True:
        page = await storage.list(limit=7, cursor=cursor, **filters)
        out.extend(page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            return out


async def assert_counts_exact(storage: Storage) -> None:
    """The counts ``queues()`` keeps agree with the tasks actually stored."""
    actual: dict[str, dict[str, int]] = {}
    for t in await all_tasks(storage):
        per_queue = actual.setdefault(t.queue, {})
        per_queue[t.state] = per_queue.get(t.state, 0) + 1
    kept = {q.name: {s: n for s, n in q.counts.items() if n} for q in await storage.queues()}
    for name in actual:
        assert name in kept, f"queue {name} holds tasks but queues() omits it"
    assert {k: v for k, v in kept.items() if v} == actual


@asynccontextmanager
async def two_handles(new_storage: Callable[[], Storage]) -> AsyncIterator[tuple[Storage, Storage]]:
    """Two open handles on one store, as two processes would hold; closed after.

    A store only one process may use (no ``SHARED`` capability) refuses a
    second handle, so there both are the same handle.
    """
    first = new_storage()
    await first.open()
    second = first
    try:
        if SHARED in first.capabilities:
            second = new_storage()
            await second.open()
        yield first, second
    finally:
        if second is not first:
            await second.close()
        await first.close()
