"""tqd serves the dashboard bundle at / (no browser: pytest-aiohttp)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
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


async def test_inline_scripts_of_the_index_run_by_their_hash_only(aiohttp_client, dist: Path) -> None:
    script = "\n  window.started = fetch('v1/tasks/x');\n"
    (dist / "index.html").write_text(
        f'<!doctype html><head><script>{script}</script>'
        '<script type="module" src="./assets/app-1.js"></script></head>'
    )
    client = await aiohttp_client(_app(dist))
    resp = await client.get("/")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = resp.headers["Content-Security-Policy"]
    assert f"script-src 'self' 'sha256-{digest}';" in csp
    assert "unsafe-inline" not in csp and csp.count("sha256-") == 1
    # an asset's answer names no inline script
    asset = await client.get("/assets/app-1.js")
    assert "sha256-" not in asset.headers["Content-Security-Policy"]


def test_the_policy_allows_each_inline_script_of_the_committed_index() -> None:
    folder = dashboard.dist_dir()
    assert folder is not None
    index = (folder / "index.html").read_bytes()
    csp = dashboard.index_csp(index)
    scripts = re.findall(rb"<script>(.*?)</script>", index, re.DOTALL)
    assert scripts, "index.html starts the task page's request from an inline script"
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp


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
