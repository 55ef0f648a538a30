"""tqd serves the dashboard bundle at / (no browser: pytest-aiohttp)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from aiohttp import web

from tqd.api import dashboard
from tqd.api.app import errors_middleware


def _app(folder: Path | None) -> web.Application:
    app = web.Application(middlewares=[errors_middleware])
    dashboard.Dashboard(folder).add_routes(app)
    return app


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text('<!doctype html><script src="./assets/app-1.js"></script>')
    (tmp_path / "assets" / "app-1.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not an asset")
    return tmp_path


async def test_index_is_served_with_a_strict_policy(aiohttp_client, dist: Path) -> None:
    client = await aiohttp_client(_app(dist))
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "assets/app-1.js" in await resp.text()
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_assets_are_served_and_cached(aiohttp_client, dist: Path) -> None:
    client = await aiohttp_client(_app(dist))
    resp = await client.get("/assets/app-1.js")
    assert resp.status == 200
    assert await resp.text() == "console.log(1)"
    assert "immutable" in resp.headers["Cache-Control"]


@pytest.mark.parametrize("path", ["/assets/missing.js", "/assets/..%2Fsecret.txt", "/assets/.hidden"])
async def test_nothing_outside_the_assets_is_served(aiohttp_client, dist: Path, path: str) -> None:
    client = await aiohttp_client(_app(dist))
    resp = await client.get(path)
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["code"] == "not_found"


async def test_a_missing_bundle_says_how_to_build_it(aiohttp_client) -> None:
    client = await aiohttp_client(_app(None))
    resp = await client.get("/")
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "dashboard_missing"
    assert "npm ci && npm run build" in body["error"]["message"]


def test_the_committed_bundle_is_found_and_small() -> None:
    folder = dashboard.dist_dir()
    assert folder is not None, "web_assets/dist/index.html is missing: build the dashboard"
    index = (folder / "index.html").read_text()
    # Everything the page loads is in the bundle: no other host is named.
    assert "http://" not in index and "https://" not in index
    total = sum(len(gzip.compress(p.read_bytes(), 9)) for p in folder.rglob("*") if p.is_file())
    assert total <= 200 * 1024, f"dashboard bundle is {total} bytes gzipped, over 200 KB"
