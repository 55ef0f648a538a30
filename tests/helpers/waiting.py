"""Waiting for a condition with a deadline, from async tests.

For conditions that no event announces (a process exiting, a row that
another process changes): poll, and fail with a clear message at the
deadline rather than sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(condition: Callable[[], Any], within: float = 10.0, interval: float = 0.01,
                     message: str = "condition") -> Any:
    """The first truthy value of ``condition()`` (sync or async); AssertionError
    after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{message} not met within {within}s")
        await asyncio.sleep(interval)
