"""Task handlers that the dashboard tests configure in their tqd."""

from __future__ import annotations

from typing import Any

from tqd.runtime.handlers import TaskFailed


def flaky(payload: Any, ctx: Any) -> dict[str, Any]:
    """Fail the first attempt for good (dead letter); succeed on any later one."""
    if ctx.attempt == 1:
        raise TaskFailed("first attempt fails on purpose", retry=False)
    return {"ok": True, "attempt": ctx.attempt}
