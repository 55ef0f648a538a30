"""tqd's own handlers, for trials, smoke tests and benchmarks."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from tqd.runtime.handlers.base import RawJSON, TaskContext, TaskFailed


class Noop:
    """Does nothing; the result is null."""

    async def run(self, ctx: TaskContext) -> Any:
        return None

    async def close(self) -> None:
        pass


class Echo:
    """Returns the payload as the result."""

    async def run(self, ctx: TaskContext) -> Any:
        return RawJSON(ctx.raw_payload)

    async def close(self) -> None:
        pass


class Sleep:
    """Sleeps ``{"seconds": s}`` (or a bare number; null or absent: 1 s), then returns null."""

    async def run(self, ctx: TaskContext) -> Any:
        payload = ctx.payload
        seconds = payload.get("seconds", 1) if isinstance(payload, dict) else payload
        if seconds is None:
            seconds = 1
        number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not number or not math.isfinite(seconds) or seconds < 0:
            raise TaskFailed("payload.seconds: expected a number >= 0", retry=False)
        await asyncio.sleep(seconds)
        return None

    async def close(self) -> None:
        pass


class Fail:
    """Fails with ``{"message": ..., "retry": true|false}`` (retry by default)."""

    async def run(self, ctx: TaskContext) -> Any:
        payload = ctx.payload if isinstance(ctx.payload, dict) else {}
        message = str(payload.get("message", "tqd.fail was asked to fail"))
        raise TaskFailed(message, retry=bool(payload.get("retry", True)))

    async def close(self) -> None:
        pass


BUILTINS = {"noop": Noop, "echo": Echo, "sleep": Sleep, "fail": Fail}
