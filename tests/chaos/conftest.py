"""Fixtures of the chaos suite: a store URL per backend (a fresh SQLite file, or
a key prefix of its own on the session's redis-server)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401


@dataclass
class Store:
    """Where a chaos test's tqd keeps its tasks."""

    backend: str
    url: str
    prefix: str = ""


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store("sqlite", f"sqlite://{tmp_path / 'tqd.db'}")
    server = request.getfixturevalue("redis_server")
    return Store("redis", server.url, request.getfixturevalue("redis_prefix"))
