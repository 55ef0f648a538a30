"""Helpers of the end-to-end tests: a config file for `tqd serve` and a way to
read the SQLite file after the daemon exited."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tqd.models import Task
from tqd.storage.sqlite import SqliteStorage

PYMODS = Path(__file__).parent / "pymods"


def write_config(path: Path, *, concurrency: int, grace: float = 25.0) -> Path:
    """A tqd.toml with the ledger task ``e2e.ledger`` in queue ``e2e`` and
    ``e2e.block``, a sync handler that holds its thread."""
    path.write_text(
        f'python_path = ["{PYMODS}"]\n'
        f"shutdown_grace = {grace}\n"
        "[worker]\n"
        f"concurrency = {concurrency}\n"
        "[tasks.\"e2e.ledger\"]\n"
        'handler = "tqd_e2e_ledger:run"\n'
        'queue = "e2e"\n'
        "[tasks.\"e2e.block\"]\n"
        'handler = "tqd_e2e_ledger:block"\n'
    )
    return path


def stored_tasks(db: Path) -> dict[str, Task]:
    """Every task in the SQLite file, by id (the daemon must have exited)."""

    async def read() -> dict[str, Task]:
        store = SqliteStorage(str(db))
        await store.open()
        try:
            found: dict[str, Task] = {}
            cursor = None
            while True:
                page = await store.list(limit=1000, cursor=cursor)
                found.update((t.id, t) for t in page.tasks)
                cursor = page.next_cursor
                if cursor is None:
                    return found
        finally:
            await store.close()

    return asyncio.run(read())
