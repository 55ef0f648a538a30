"""Fixtures of the Redis-specific tests (the contract itself is tested by the
conformance suite one folder up, against fakeredis and a real server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.helpers.redis_server import RedisServer, start_server
from tqd.storage.redis import RedisStorage


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, which it may stop, restart or reconfigure."""
    server = start_server(tmp_path)
    yield server
    server.stop()


@pytest.fixture
async def raw(redis_server) -> AsyncIterator[Redis]:
    """A plain client on the session's server, to look at keys and stats."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def opened(redis_server, redis_prefix) -> AsyncIterator[Callable[..., Any]]:
    """``await opened(**kwargs)``: an opened RedisStorage (default: the session's
    server and this test's prefix), closed after the test."""
    handles: list[RedisStorage] = []

    async def make(url: str | None = None, **kwargs: Any) -> RedisStorage:
        kwargs.setdefault("prefix", redis_prefix)
        s = RedisStorage(url or redis_server.url, **kwargs)
        await s.open()
        handles.append(s)
        return s

    yield make
    for s in handles:
        await s.close()
