"""Fixtures of the multi-process tests: real ``tqd serve`` subprocesses on one
real redis-server (the session's, with a key prefix per test, unless a test
needs a server of its own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import Daemon
from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401


def write_config(path: Path, prefix: str, *, worker: bool = True, concurrency: int = 20,
                 visibility_timeout: float = 2.0, worker_ttl: float = 3.0) -> Path:
    """A tqd.toml for a test daemon: short leases and registrations, so that
    what happens after a crash happens within seconds."""
    path.write_text(
        f'[redis]\nprefix = "{prefix}"\n'
        f"[defaults]\nvisibility_timeout = {visibility_timeout}\n"
        f"[worker]\nenabled = {'true' if worker else 'false'}\nconcurrency = {concurrency}\n"
        f"[roles]\nworker_ttl = {worker_ttl}\nheartbeat_interval = 0.5\n"
        "supervisor_interval = 0.2\n"
    )
    return path


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``daemons(storage_url, prefix, name, **config)``: a started ``tqd serve``
    with its own config file; every one is stopped (or killed) after the test."""
    started: list[Daemon] = []

    def start(url: str, prefix: str, name: str, **config) -> Daemon:
        cfg = write_config(tmp_path / f"{name}.toml", prefix, **config)
        d = Daemon(url, config=cfg, args=["--log-level", "info"]).start()
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            try:
                d.stop(timeout=20)
            except Exception:
                d.kill()
