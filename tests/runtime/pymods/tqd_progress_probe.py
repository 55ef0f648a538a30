"""Python handlers that report progress, for tests/runtime/test_progress.py.

Loaded through ``python_path`` as a user's handlers would be."""

from __future__ import annotations

import asyncio

#: Set by the test to let ``hold_async`` finish (the test makes a fresh one).
release = asyncio.Event()
#: Filled with each task id once its handler reported its first progress.
reported: list[str] = []


async def steps_async(payload, ctx):
    """Reports ``payload["n"]`` steps, the last one "done", and returns."""
    n = payload["n"]
    for i in range(1, n + 1):
        ctx.progress(i / n, f"step {i} of {n}" if i < n else "done")
        if i % 100 == 0:
            await asyncio.sleep(0)
    return n


def steps_sync(payload, ctx):
    """The same from a thread (a sync handler)."""
    n = payload["n"]
    for i in range(1, n + 1):
        ctx.progress(i / n, f"step {i} of {n}" if i < n else "done")
    return n


async def hold_async(payload, ctx):
    """Reports once, then waits until released (or cancelled)."""
    ctx.progress(0.5, "halfway")
    reported.append(ctx.task_id)
    await release.wait()
    return None


def bad_fraction(payload, ctx):
    """Reports a fraction out of range; ValueError fails the attempt."""
    ctx.progress(payload["fraction"])
    return "unreachable"
