"""CORS (off unless configured), the origin check and the DNS-rebinding host check."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import WSServerHandshakeError, web

from .conftest import bearer, token_config

APP = "http://app.example:8080"
EVIL = "http://evil.example"


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_cors_off_by_default(make_client: Any) -> None:
    client = await make_client(tokens=token_config())
    resp = await client.options("/v1/tasks", headers=preflight(APP))
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "CORS allows no origin" in (await resp.json())["error"]["message"]
    # a cross-origin GET gets its answer, but no header that lets the page read it
    resp = await client.get("/v1/queues", headers={"Origin": APP, **bearer("read")})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_configured_origin_gets_preflight_and_headers(make_client: Any) -> None:
    client = await make_client(tokens=token_config(), api={"cors_origins": [APP]})
    # the preflight needs no token (browsers send none with it)
    resp = await client.options("/v1/tasks", headers=preflight(APP))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert resp.headers["Vary"] == "Origin"
    # the real call carries the header, errors included (so the page can read them)
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop"},
                             headers={"Origin": APP, **bearer("write")})
    assert resp.status == 201
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert "Location" in resp.headers["Access-Control-Expose-Headers"]
    resp = await client.get("/v1/queues", headers={"Origin": APP})
    assert resp.status == 401
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    # another origin: no preflight, no headers
    resp = await client.options("/v1/tasks", headers=preflight(EVIL))
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.get("/v1/queues", headers={"Origin": EVIL, **bearer("read")})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_same_origin_and_originless_requests_pass(make_client: Any) -> None:
    client = await make_client()
    own = f"http://{client.server.host}:{client.server.port}"
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop"}, headers={"Origin": own})
    assert resp.status == 201
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop"})
    assert resp.status == 201


async def test_cross_site_actions_on_a_tokenless_tqd_are_refused(make_client: Any) -> None:
    """A page on another site cannot act through its visitor's browser."""
    client = await make_client(extra_routes=_ws_route)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        resp = await client.request(method, "/v1/tasks", data=b'{"name": "tqd.noop"}',
                                    headers={"Origin": EVIL, "Content-Type": "application/json"})
        assert resp.status == 403, method
        assert "cross-origin request from 'http://evil.example' refused" in (
            await resp.json())["error"]["message"]
    assert (await (await client.get("/v1/tasks")).json())["tasks"] == []
    # a WebSocket is not covered by CORS: its handshake is checked like a POST
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/v1/test-socket", headers={"Origin": EVIL})
    assert refused.value.status == 403
    sock = await client.ws_connect("/v1/test-socket")
    await sock.close()
    # reads pass (the page cannot read them without CORS headers)
    resp = await client.get("/v1/tasks", headers={"Origin": EVIL})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_with_tokens_the_origin_is_not_the_guard(make_client: Any) -> None:
    """Behind a proxy that rewrites Host, the dashboard's own calls still work:
    with tokens, the token decides (a page of another site has none)."""
    client = await make_client(tokens=token_config("write"))
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop"},
                             headers={"Origin": "https://tqd.example.com", **bearer("write")})
    assert resp.status == 201
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop"}, headers={"Origin": EVIL})
    assert resp.status == 401


def _ws_route(app: web.Application) -> None:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.close()
        return sock

    app.router.add_get("/v1/test-socket", ws)


async def test_host_check_without_tokens(make_client: Any) -> None:
    client = await make_client()
    for host in ("localhost:7411", "127.0.0.1", "[::1]:7411", "app.localhost:1"):
        resp = await client.get("/v1/queues", headers={"Host": host})
        assert resp.status == 200, host
    resp = await client.get("/v1/queues", headers={"Host": "rebound.example:7411"})
    assert resp.status == 403
    message = (await resp.json())["error"]["message"]
    assert "'rebound.example' is not a loopback name" in message
    assert "DNS rebinding" in message
    assert "[api] cors_origins" in message


async def test_host_of_a_listed_origin_passes_the_host_check(make_client: Any) -> None:
    client = await make_client(api={"cors_origins": ["https://tqd.example.com"]})
    resp = await client.get("/v1/queues", headers={"Host": "tqd.example.com"})
    assert resp.status == 200
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop"},
                             headers={"Host": "tqd.example.com", "Origin": "https://tqd.example.com"})
    assert resp.status == 201


async def test_host_check_is_off_with_tokens(make_client: Any) -> None:
    client = await make_client(tokens=token_config("read"))
    resp = await client.get("/v1/queues", headers={"Host": "tqd.example.com", **bearer("read")})
    assert resp.status == 200
