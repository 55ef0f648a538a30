"""Fixtures of the API tests: a whole tqd started in this process on a free
port (real HTTP server, real SQLite file), and an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tqd.config import load_config
from tqd.daemon import Daemon


@pytest.fixture
async def start_tqd(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """``await start_tqd(**settings)``: a started Daemon; settings are tqd.toml
    keys (``events={"buffer": 5}``). Stopped after the test."""
    started: list[Daemon] = []

    async def start(**settings: Any) -> Daemon:
        overrides = {"listen": "127.0.0.1:0", "storage": f"sqlite://{tmp_path}/tqd.db",
                     "shutdown_grace": 2.0, **settings}
        daemon = Daemon(load_config(None, env={}, overrides=overrides))
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        await daemon.stop()


@pytest.fixture
async def tqd(start_tqd) -> Daemon:
    """A tqd with the default settings."""
    return await start_tqd()


@pytest.fixture
async def http(tqd) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose relative URLs go to ``tqd``."""
    async with aiohttp.ClientSession(base_url=tqd.url) as session:
        yield session
