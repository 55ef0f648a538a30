"""Tools of the chaos suite: the ledger, a restartable tqd, looks into the store.

Every test prints its figures in one line starting with ``chaos:`` and, when
``$TQD_CHAOS_REPORT`` names a file, appends them there as JSON (the source of
the tables in docs/RELIABILITY.md). ``TQD_CHAOS_LONG=1`` makes every test
longer (more tasks, more kills).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.daemon import Daemon
from tqd.models import Task
from tqd.storage.base import Storage
from tqd.storage.redis import RedisStorage
from tqd.storage.sqlite import SqliteStorage

LONG = bool(os.environ.get("TQD_CHAOS_LONG"))
PYMODS = Path(__file__).parent / "pymods"


def scale(short: int, long: int) -> int:
    """``short`` in CI, ``long`` with TQD_CHAOS_LONG=1."""
    return long if LONG else short


def report(test: str, **figures: Any) -> None:
    """Print the figures of a test, and keep them in $TQD_CHAOS_REPORT."""
    shown = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in figures.items())
    print(f"\nchaos: {test}: {shown}")
    target = os.environ.get("TQD_CHAOS_REPORT")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"test": test, "long": LONG, **figures}) + "\n")


@dataclass
class Run:
    """One line of the ledger."""

    kind: str
    task_id: str
    attempt: int
    at: float
    pid: int


@dataclass
class Ledger:
    """The runs the chaos handlers recorded, read from the file."""

    path: Path
    runs: list[Run] = field(default_factory=list)

    def read(self) -> Ledger:
        self.runs = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                kind, task_id, attempt, at, pid = line.split()
                self.runs.append(Run(kind, task_id, int(attempt), float(at), int(pid)))
        return self

    def ends(self) -> dict[str, int]:
        """How many times each task finished a run."""
        out: dict[str, int] = defaultdict(int)
        for r in self.runs:
            if r.kind == "end":
                out[r.task_id] += 1
        return out

    def starts(self, task_id: str) -> list[float]:
        return [r.at for r in self.runs if r.kind == "start" and r.task_id == task_id]


def chaos_config(folder: Path, *, visibility: float = 30.0, redis_prefix: str = "",
                 grace: float = 5.0, extra: str = "") -> Path:
    """A tqd.toml with the chaos task names; ``extra`` (tables) is appended."""
    path = folder / "tqd.toml"
    prefix = f'[redis]\nprefix = "{redis_prefix}"\n\n' if redis_prefix else ""
    path.write_text(
        f'python_path = ["{PYMODS}"]\nshutdown_grace = {grace}\n\n{prefix}'
        f'[tasks.record]\nhandler = "chaos_tasks:record"\nmax_attempts = 25\n'
        f"visibility_timeout = {visibility}\nbackoff_base = 0.05\nbackoff_max = 0.2\n\n"
        f'[tasks.poison]\nhandler = "chaos_tasks:poison"\nmax_attempts = 3\n'
        f"visibility_timeout = {visibility}\n\n"
        + extra
    )
    return path


class Tqd:
    """``tqd serve`` that a test may kill and start again on the same store."""

    def __init__(self, storage: str, config: Path, ledger: Path) -> None:
        self.storage, self.config, self.ledger = storage, config, ledger
        self.daemon: Daemon | None = None
        self.started_at = 0.0
        self.stderr = ""

    def start(self) -> Daemon:
        self.started_at = time.time()
        self.daemon = Daemon(self.storage, config=self.config,
                             env={"TQD_CHAOS_LEDGER": str(self.ledger)}).start(timeout=60)
        return self.daemon

    def kill(self) -> None:
        assert self.daemon is not None
        self.daemon.kill()
        self.stderr += self.daemon.stderr

    def stop(self) -> int:
        assert self.daemon is not None
        status = self.daemon.stop(60)
        self.stderr += self.daemon.stderr
        return status

    @property
    def url(self) -> str:
        assert self.daemon is not None
        return self.daemon.url


def post(url: str, path: str, body: Any, timeout: float = 30.0) -> tuple[int, Any]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def open_store(url: str, prefix: str | None = None) -> Storage:
    """A Storage handle on the store tqd uses (not opened)."""
    if url.startswith("sqlite://"):
        return SqliteStorage(url.removeprefix("sqlite://"))
    return RedisStorage(url, prefix=prefix or "tqd")


def store_tasks(url: str, state: str | None = None, prefix: str | None = None) -> list[Task]:
    """Every task (of ``state``) in the store, read through the storage contract
    while no tqd runs on it (SQLite allows one process at a time)."""

    async def read() -> list[Task]:
        store = open_store(url, prefix)
        await store.open()
        try:
            out, cursor = [], None
            while True:
                page = await store.list(state=state, limit=1000, cursor=cursor)
                out.extend(page.tasks)
                if page.next_cursor is None:
                    return out
                cursor = page.next_cursor
        finally:
            await store.close()

    return asyncio.run(read())
