"""Python handlers for the worker pool tests, loaded through ``python_path``.

They measure what the pool does to them (start order, tasks in flight per
queue, cancellations, the thread they run on) in module state that the test
reads; ``reset()`` clears it before each test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

from tqd.runtime.handlers import TaskFailed


class _State:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_queue: Counter[str] = Counter()
        self.max_per_queue: Counter[str] = Counter()
        self.gates: dict[str, asyncio.Event] = {}
        self.threads: dict[str, str] = {}
        self.sync_started = threading.Event()
        self.sync_release = threading.Event()
        self.start_times: dict[str, float] = {}

    def gate(self, name: str) -> asyncio.Event:
        """The event that ``gated`` tasks with ``{"gate": name}`` wait for."""
        return self.gates.setdefault(name, asyncio.Event())


state = _State()


def reset() -> None:
    global state
    state.sync_release.set()  # free a thread a failed test left blocked
    state = _State()


async def record(payload, ctx):
    """Records its start and returns its payload."""
    state.started.append(ctx.task_id)
    state.start_times[ctx.task_id] = time.monotonic()
    return payload


async def measured(payload, ctx):
    """Counts the tasks in flight, globally and per queue, while it sleeps."""
    state.started.append(ctx.task_id)
    state.in_flight += 1
    state.per_queue[ctx.queue] += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    state.max_per_queue[ctx.queue] = max(state.max_per_queue[ctx.queue], state.per_queue[ctx.queue])
    try:
        await asyncio.sleep(payload.get("seconds", 0.01))
    finally:
        state.in_flight -= 1
        state.per_queue[ctx.queue] -= 1
    return None


async def gated(payload, ctx):
    """Runs until its gate opens; records a cancellation if it sees one."""
    state.started.append(ctx.task_id)
    try:
        await state.gate(payload["gate"]).wait()
    except asyncio.CancelledError:
        state.cancelled.append(ctx.task_id)
        raise
    state.finished.append(ctx.task_id)
    return "opened"


async def boom(payload, ctx):
    """Fails with an ordinary exception (retryable)."""
    state.started.append(ctx.task_id)
    raise RuntimeError("boom")


async def give_up(payload, ctx):
    """Fails and asks for no retry."""
    state.started.append(ctx.task_id)
    raise TaskFailed("gave up on purpose", retry=False, kind="refused")


async def later(payload, ctx):
    """Fails and names its own delay before the next attempt."""
    raise TaskFailed("come back later", delay=payload["delay"])


async def not_json(payload, ctx):
    """Returns something that is not JSON."""
    return object()


def blocking(payload, ctx):
    """A sync function that blocks its thread until the test releases it."""
    state.threads[ctx.task_id] = threading.current_thread().name
    state.sync_started.set()
    if not state.sync_release.wait(10):
        raise RuntimeError("never released")
    return {"attempt": ctx.attempt, "thread": threading.current_thread().name}
