"""Handlers of the chaos suite: each run is written to a ledger outside tqd.

The ledger is a file named by ``$TQD_CHAOS_LEDGER``; every line is
``start|end ID ATTEMPT EPOCH PID``, appended with one write (O_APPEND), so a
SIGKILL of tqd never leaves half a line and never loses a line already written.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any


def _write(kind: str, ctx: Any) -> None:
    line = f"{kind} {ctx.task_id} {ctx.attempt} {time.time():.6f} {os.getpid()}\n"
    fd = os.open(os.environ["TQD_CHAOS_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def record(payload: Any, ctx: Any) -> dict:
    """Run for ``payload["seconds"]`` and write a start and an end line."""
    _write("start", ctx)
    await asyncio.sleep((payload or {}).get("seconds", 0.05))
    _write("end", ctx)
    return {"ran": ctx.task_id}


def poison(payload: Any, ctx: Any) -> None:
    """Kill the whole tqd process, every time it runs."""
    _write("start", ctx)
    os.kill(os.getpid(), signal.SIGKILL)
