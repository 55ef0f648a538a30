"""A handler for the queue-limit tests: it appends a ``start`` line when it
begins and an ``end`` line when it ends to the ledger file named by
``$LIMITS_LEDGER`` (O_APPEND, one write a line, so lines from several
processes never interleave), sleeping ``payload["seconds"]`` in between.

Line: ``start|end <epoch seconds> <task id> <queue> <pid>``. The tests measure
concurrency, rate and waits from these lines: what the handlers saw, not
what tqd reports.
"""

from __future__ import annotations

import asyncio
import os
import time

LEDGER = os.environ["LIMITS_LEDGER"]


def _note(what: str, ctx) -> None:
    line = f"{what} {time.time():.6f} {ctx.task_id} {ctx.queue} {os.getpid()}\n"
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def run(payload, ctx):
    _note("start", ctx)
    try:
        await asyncio.sleep((payload or {}).get("seconds", 0.01))
    finally:
        _note("end", ctx)
    return None
