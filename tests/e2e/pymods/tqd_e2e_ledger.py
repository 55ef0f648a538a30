"""A handler for the end-to-end tests: sleeps a few ms, then appends its task id
to a ledger file outside tqd (one line per completed run, O_APPEND)."""

from __future__ import annotations

import asyncio
import os

LEDGER = os.environ["E2E_LEDGER"]


async def run(payload, ctx):
    await asyncio.sleep((payload or {}).get("ms", 5) / 1000)
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.task_id}\n".encode())
    finally:
        os.close(fd)
    return None


def block(payload, ctx):
    """A sync handler that holds its thread for ``payload["seconds"]``."""
    import time

    time.sleep(payload["seconds"])
    return None
