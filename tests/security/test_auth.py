"""Tokens and scopes on every route of the real app (SQLite store behind it)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import WSServerHandshakeError, web

from tqd import tokens as tokens_module
from tqd.api.auth import PUBLIC_ROUTES, WRITE_ROUTES, WS_PROTOCOLS, required_scope
from tqd.tokens import TokenTable, hash_token, new_token, scope_allows

from .conftest import TOKENS, bearer, token_config

ID = "0000000000000000000X"


def concrete(route: str) -> str:
    """A path that matches ``route``: ``/v1/tasks/{id}`` → ``/v1/tasks/<ID>``."""
    return re.sub(r"\{queue\}", "default", re.sub(r"\{id\}", ID, re.sub(r"\{name\}", "x.js", route)))


def api_routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, route) of the app, HEAD left out (it follows GET)."""
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return sorted(found)


async def test_no_tokens_configured_means_no_token_asked(make_client: Any) -> None:
    client = await make_client()
    resp = await client.get("/v1/queues")
    assert resp.status == 200
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop"})
    assert resp.status == 201


async def test_every_route_but_public_ones_answers_401_without_token(make_client: Any) -> None:
    client = await make_client(tokens=token_config())
    routes = api_routes(client.server.app)
    assert ("POST", "/v1/tasks") in routes and ("GET", "/healthz") in routes
    checked = 0
    for method, route in routes:
        resp = await client.request(method, concrete(route), json={} if method != "GET" else None)
        if route in PUBLIC_ROUTES:
            assert resp.status != 401, (method, route)
            continue
        body = await resp.json()
        assert resp.status == 401, (method, route, body)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["error"]["code"] == "unauthorized"
        assert "Authorization: Bearer" in body["error"]["message"]
        checked += 1
    assert checked >= 10
    # /healthz is open; a route that does not exist says 401, not 404
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/no/such/route")).status == 401


async def test_unknown_and_malformed_tokens_answer_401(make_client: Any) -> None:
    client = await make_client(tokens=token_config())
    cases = {
        "Bearer " + new_token(): "the token is not valid",
        "Bearer " + TOKENS["admin"] + "x": "the token is not valid",
        "Basic dXNlcjpwYXNz": "Authorization: expected 'Bearer <token>'",
        "Bearer": "Authorization: expected 'Bearer <token>'",
        "Bearer    ": "Authorization: expected 'Bearer <token>'",
    }
    for header, message in cases.items():
        resp = await client.get("/v1/queues", headers={"Authorization": header})
        body = await resp.json()
        assert resp.status == 401, header
        assert body["error"]["message"] == message
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    # the scheme is case-insensitive (RFC 7235)
    resp = await client.get("/v1/queues", headers={"Authorization": "bearer " + TOKENS["read"]})
    assert resp.status == 200


async def test_scopes_read_write_admin(make_client: Any) -> None:
    client = await make_client(tokens=token_config())
    # read: every GET, nothing else
    assert (await client.get("/v1/tasks", headers=bearer("read"))).status == 200
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop"}, headers=bearer("read"))
    body = await resp.json()
    assert resp.status == 403
    assert body["error"] == {
        "code": "forbidden",
        "message": "token 'read-client' has scope 'read'; POST /v1/tasks needs scope 'write'",
    }
    assert 'scope="write"' in resp.headers["WWW-Authenticate"]
    # write: enqueue, cancel, retry; not the queue controls nor delete
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop", "delay": 60},
                             headers=bearer("write"))
    assert resp.status == 201
    task_id = (await resp.json())["id"]
    assert (await client.post(f"/v1/tasks/{task_id}/cancel", headers=bearer("write"))).status == 200
    assert (await client.post(f"/v1/tasks/{task_id}/retry", headers=bearer("write"))).status == 200
    for method, path in (("POST", "/v1/queues/default/pause"), ("DELETE", f"/v1/tasks/{task_id}"),
                         ("POST", "/v1/queues/default/redrive")):
        resp = await client.request(method, path, headers=bearer("write"))
        assert resp.status == 403, path
        assert "needs scope 'admin'" in (await resp.json())["error"]["message"]
    # admin: everything
    assert (await client.post("/v1/queues/default/pause", headers=bearer("admin"))).status == 200
    assert (await client.post("/v1/queues/default/redrive", headers=bearer("admin"))).status == 200
    assert (await client.delete(f"/v1/tasks/{task_id}", headers=bearer("admin"))).status == 204


async def test_each_route_needs_the_scope_of_the_table(make_client: Any) -> None:
    """Every route of the app, with each token: allowed exactly when the scope suffices."""
    client = await make_client(tokens=token_config())
    for method, route in api_routes(client.server.app):
        if route in PUBLIC_ROUTES:
            continue
        needed = required_scope(method, route)
        for scope in ("read", "write", "admin"):
            resp = await client.request(method, concrete(route), headers=bearer(scope),
                                        json={} if method != "GET" else None)
            if scope_allows(scope, needed):
                assert resp.status not in (401, 403), (scope, method, route, await resp.text())
            else:
                assert resp.status == 403, (scope, method, route)


def test_scope_table() -> None:
    assert required_scope("GET", "/v1/tasks/{id}") == "read"
    assert required_scope("HEAD", "/v1/queues") == "read"
    for method, route in WRITE_ROUTES:
        assert required_scope(method, route) == "write"
    # anything not listed is admin: a new route is never looser than intended
    assert required_scope("PATCH", "/v1/tasks/{id}") == "admin"
    assert required_scope("DELETE", "/v1/tasks/{id}") == "admin"
    assert required_scope("POST", "/v1/queues/{queue}/purge") == "admin"
    assert required_scope("POST", "/v1/some/new/thing") == "admin"


async def test_unknown_route_with_a_valid_token_is_404_not_403(make_client: Any) -> None:
    client = await make_client(tokens=token_config("read"))
    resp = await client.post("/v1/nothing/here", headers=bearer("read"))
    assert resp.status == 404
    resp = await client.put("/v1/tasks", headers=bearer("read"))
    assert resp.status == 405


def _ws_routes(app: web.Application) -> None:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(protocols=WS_PROTOCOLS)
        await sock.prepare(request)
        await sock.send_str("hello")
        await sock.close()
        return sock

    app.router.add_get("/v1/test-socket", ws)


async def test_websocket_token_in_subprotocol(make_client: Any) -> None:
    client = await make_client(extra_routes=_ws_routes, tokens=token_config("read"))
    # without a token the handshake is refused with 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/v1/test-socket")
    assert refused.value.status == 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/v1/test-socket", protocols=("tqd", "bearer." + new_token()))
    assert refused.value.status == 401
    # as the dashboard does it: ["tqd", "bearer.<token>"]; the server picks "tqd"
    sock = await client.ws_connect("/v1/test-socket", protocols=("tqd", "bearer." + TOKENS["read"]))
    assert sock.protocol == "tqd"
    assert (await sock.receive()).data == "hello"
    await sock.close()
    # a header works as well (programs)
    sock = await client.ws_connect("/v1/test-socket", headers=bearer("read"))
    assert (await sock.receive()).data == "hello"
    await sock.close()


async def test_subprotocol_token_counts_only_on_a_websocket_upgrade(make_client: Any) -> None:
    client = await make_client(tokens=token_config("read"))
    resp = await client.get("/v1/queues",
                            headers={"Sec-WebSocket-Protocol": "tqd, bearer." + TOKENS["read"]})
    assert resp.status == 401


def test_token_table_compares_every_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """A match does not stop the loop: the time taken does not tell which token matched."""
    table = TokenTable([(f"t{i}", hash_token(f"token-{i:030d}"), "read") for i in range(5)])
    calls: list[tuple[bytes, bytes]] = []
    real = tokens_module.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", counting)
    identity = table.match(f"token-{0:030d}")
    assert identity is not None and identity.name == "t0"
    assert len(calls) == 5
    calls.clear()
    assert table.match("no-such-token-xxxxxxxxxxxx") is None
    assert len(calls) == 5
    # both arguments are digests of equal length, never the raw token
    assert all(len(a) == len(b) == 32 for a, b in calls)


def test_hash_format() -> None:
    digest = hash_token("tqd_example-token-000000000000")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert digest == hash_token("tqd_example-token-000000000000")
    token = new_token()
    assert token.startswith("tqd_") and len(token) == 47
    assert tokens_module.check_token_text(token) is None


async def test_dashboard_files_load_without_a_token_its_data_does_not(make_client: Any) -> None:
    from tqd.api.dashboard import dist_dir

    folder = dist_dir()
    assert folder is not None, "the dashboard bundle is missing from this checkout"
    asset = next((folder / "assets").iterdir()).name
    client = await make_client(tokens=token_config("read"))
    page = await client.get("/")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    assert (await client.get(f"/assets/{asset}")).status == 200
    assert (await client.get("/assets/nothing.js")).status == 404
    assert (await client.get("/v1/queues")).status == 401
    assert (await client.get("/v1/queues", headers=bearer("read"))).status == 200


async def test_a_remote_worker_needs_a_write_token(make_client: Any) -> None:
    """The Python client's pull API (lease, complete) with each scope."""
    from tqd.client import ApiError, AsyncClient

    client = await make_client(
        tokens=token_config(), tasks={"render": {"handler": {"kind": "remote"}, "queue": "gpu"}})
    url = str(client.make_url("")).rstrip("/")
    async with AsyncClient(url, token=TOKENS["write"]) as writer:
        await writer.enqueue("render", {"frame": 1})
        async with AsyncClient(url, token=TOKENS["read"]) as reader:
            with pytest.raises(ApiError) as refused:
                await reader.lease("gpu")
            assert refused.value.status == 403 and "needs scope 'write'" in refused.value.message
        [task] = await writer.lease("gpu")
        done = await writer.complete(task["id"], task["lease"]["token"], {"ok": True})
        assert done["state"] == "completed"
