"""Waiting for a condition with a deadline, without sleeping blindly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from tqd.models import Change, QueueChange
from tqd.storage.base import Storage


class Heard:
    """Collects the changes a storage emits and lets a test await one."""

    def __init__(self, storage: Storage) -> None:
        self.changes: list[Change | QueueChange] = []
        self._arrived = asyncio.Event()
        storage.add_listener(self._on)

    def _on(self, changes: Sequence[Change | QueueChange]) -> None:
        self.changes.extend(changes)
        self._arrived.set()

    async def until(self, check: Callable[[list[Any]], bool], deadline: float = 5.0) -> None:
        """Return once ``check(changes)`` holds; fail after ``deadline`` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while not check(self.changes):
            left = end - loop.time()
            if left <= 0:
                raise AssertionError(f"not heard within {deadline}s: {self.changes}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass


async def eventually(check: Callable[[], Any], deadline: float = 10.0, step: float = 0.01) -> Any:
    """Await ``check()`` (a coroutine function) until it returns truthy."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"condition not met within {deadline}s")
        await asyncio.sleep(step)
