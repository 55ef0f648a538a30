"""Waiting inside a running event loop: conditions with a deadline, never a blind sleep."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def until(condition: Callable[[], Any], deadline: float = 10.0, interval: float = 0.005,
                message: str = "condition") -> Any:
    """Return the first truthy value of ``condition()`` (plain or async);
    fail after ``deadline`` seconds. The loop keeps running in between."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"{message} not met within {deadline}s")
        await asyncio.sleep(interval)
