"""Fixtures of the security tests: the API on a real SQLite store with chosen
tokens and settings, served by pytest-aiohttp's test server, and known
tokens of each scope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.helpers.redis_server import redis_server  # noqa: F401
from tqd.api.app import Services, create_app
from tqd.clock import SystemClock
from tqd.config import load_config
from tqd.runtime.catalog import Catalog
from tqd.storage.sqlite import SqliteStorage
from tqd.tokens import hash_token

#: One token per scope; their digests go into the config, never the tokens.
TOKENS = {
    "read": "tqd_read-token-0123456789abcdefghij",
    "write": "tqd_write-token-0123456789abcdefghij",
    "admin": "tqd_admin-token-0123456789abcdefghij",
}


def token_config(*scopes: str) -> list[dict[str, str]]:
    """``tokens`` entries for the known tokens of ``scopes`` (all by default)."""
    return [{"name": f"{s}-client", "hash": hash_token(TOKENS[s]), "scope": s}
            for s in (scopes or tuple(TOKENS))]


def bearer(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_client(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[MakeClient]:
    """Builds a test client; keywords are config overrides (``tokens=...``,
    ``api={...}``); ``extra_routes`` adds routes to the app before it starts."""
    stores: list[SqliteStorage] = []

    async def build(extra_routes: Callable[[web.Application], None] | None = None,
                    **overrides: Any) -> TestClient:
        db = tmp_path / f"tqd{len(stores)}.db"
        config = load_config(None, env={}, overrides={"storage": f"sqlite://{db}", **overrides})
        store = SqliteStorage(str(db))
        await store.open()
        stores.append(store)
        catalog = Catalog(config)
        await store.declare_queues(sorted(catalog.queues()))
        svc = Services(storage=store, catalog=catalog, config=config, clock=SystemClock())
        app = create_app(svc)
        if extra_routes is not None:
            extra_routes(app)
        return await aiohttp_client(app)

    yield build
    for store in stores:
        await store.close()
