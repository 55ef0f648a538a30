"""Bearer-token authentication and scope checks for every API route.

With no ``[[tokens]]`` configured every request passes (tqd then listens on
loopback only; see tqd/exposure.py). With tokens, every request but
``/healthz`` and the static files of the dashboard and of /docs must carry one:

- ``Authorization: Bearer <token>``, or, on a WebSocket upgrade only (a
  browser cannot set headers there), the sub-protocols ``tqd`` and
  ``bearer.<token>`` in ``Sec-WebSocket-Protocol``; the WebSocket handler
  answers with ``tqd`` (see :data:`WS_PROTOCOLS`).
- No token, or one that matches none: 401 with ``WWW-Authenticate: Bearer``.
- A token whose scope is too low: 403 naming the scope needed.

Which scope a route needs is decided here, in one table, so a new route is
``admin`` unless it is a read (GET) or listed in :data:`WRITE_ROUTES`:
forgetting to list a route makes it stricter, never looser. The name of the
token (never the token) is kept on the request under :data:`TOKEN_NAME`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import hdrs, web

from tqd.api.app import SERVICES, json_response
from tqd.config import Config
from tqd.errors import Forbidden, Unauthorized
from tqd.tokens import Identity, TokenTable, scope_allows

log = logging.getLogger("tqd.auth")

#: Request key holding the name of the token that authenticated it.
TOKEN_NAME = web.RequestKey("tqd.token_name", str)
#: What a WebSocket handler passes as ``protocols=``: the one it echoes.
WS_PROTOCOLS = ("tqd",)
_WS_TOKEN_PREFIX = "bearer."

#: Routes anyone may GET: liveness, and the static files of the dashboard and
#: of the /docs page (their data comes from the API, which asks for a token;
#: /openapi.json names this tqd's tasks and limits, so it is data too).
PUBLIC_ROUTES = frozenset({"/healthz", "/", "/assets/{name}", "/docs", "/docs/{file}"})

#: Non-GET routes that a ``write`` token may call; every other one needs admin.
WRITE_ROUTES = frozenset({
    ("POST", "/v1/tasks"),
    ("POST", "/v1/tasks/batch"),
    ("POST", "/v1/tasks/{id}/cancel"),
    ("POST", "/v1/tasks/{id}/retry"),
    # remote workers: lease, heartbeat and settle over HTTP
    ("POST", "/v1/queues/{queue}/lease"),
    ("POST", "/v1/tasks/settle"),
    ("POST", "/v1/tasks/{id}/heartbeat"),
    ("POST", "/v1/tasks/{id}/complete"),
    ("POST", "/v1/tasks/{id}/fail"),
    ("POST", "/v1/tasks/{id}/progress"),
    # a configured schedule's task, enqueued now
    ("POST", "/v1/schedules/{name}/trigger"),
})
_READ_METHODS = frozenset({"GET", "HEAD"})
#: The paths of PUBLIC_ROUTES, for requests that matched no route.
_PUBLIC_PATH = re.compile(r"/|/healthz|/docs|/assets/[^/]+|/docs/[^/]+")


def route_of(request: web.Request) -> str | None:
    """The route pattern that matched (``/v1/tasks/{id}``), or None when none did."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    resource = info.route.resource
    return resource.canonical if resource is not None else None


def required_scope(method: str, route: str) -> str:
    """The scope a request needs: read for GET, write for the listed routes, else admin."""
    if method in _READ_METHODS:
        return "read"
    if (method, route) in WRITE_ROUTES:
        return "write"
    return "admin"


def _presented_token(request: web.Request) -> tuple[str | None, str | None]:
    """``(token, problem)``: the token the request carries, or why it has none usable."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None, "Authorization: expected 'Bearer <token>'"
        return value.strip(), None
    if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
        offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
        for proto in offered.split(","):
            proto = proto.strip()
            if proto.startswith(_WS_TOKEN_PREFIX) and len(proto) > len(_WS_TOKEN_PREFIX):
                return proto[len(_WS_TOKEN_PREFIX):], None
    return None, None


def _unauthorized(message: str, *, invalid: bool) -> web.Response:
    challenge = 'Bearer realm="tqd"' + (', error="invalid_token"' if invalid else "")
    return json_response(
        Unauthorized(message).to_json(),
        status=Unauthorized.status,
        headers={hdrs.WWW_AUTHENTICATE: challenge},
    )


def _forbidden(identity: Identity, needed: str, request: web.Request) -> web.Response:
    message = (
        f"token {identity.name!r} has scope {identity.scope!r}; "
        f"{request.method} {request.path} needs scope {needed!r}"
    )
    return json_response(
        Forbidden(message).to_json(),
        status=Forbidden.status,
        headers={
            hdrs.WWW_AUTHENTICATE: f'Bearer realm="tqd", error="insufficient_scope", scope="{needed}"'
        },
    )


class _Tokens:
    """The token table of the config in use, rebuilt when the config object changes
    (a reload swaps ``Services.config``)."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._table = TokenTable(())

    def table(self, config: Config) -> TokenTable:
        if config is not self._config:
            self._table = TokenTable((t.name, t.hash, t.scope) for t in config.tokens)
            self._config = config
        return self._table


def auth_middleware() -> Any:
    """The middleware that authenticates and authorises each request (see module doc)."""
    tokens = _Tokens()

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        table = tokens.table(request.app[SERVICES].config)
        if not table:
            return await handler(request)
        route = route_of(request)
        if route in PUBLIC_ROUTES and request.method in _READ_METHODS:
            return await handler(request)
        if route is None and _PUBLIC_PATH.fullmatch(request.path):
            return await handler(request)  # another method on a public path: its 405
        token, problem = _presented_token(request)
        if token is None:
            return _unauthorized(
                problem or "a token is required: send 'Authorization: Bearer <token>'",
                invalid=problem is not None,
            )
        identity = table.match(token)
        if identity is None:
            log.info("refused an unknown token from %s for %s %s",
                     request.remote, request.method, request.path)
            return _unauthorized("the token is not valid", invalid=True)
        # A route that does not exist needs only a valid token: the answer
        # (404 or 405) then says what is wrong, not which scope it would need.
        if route is not None:
            needed = required_scope(request.method, route)
            if not scope_allows(identity.scope, needed):
                return _forbidden(identity, needed, request)
        request[TOKEN_NAME] = identity.name
        return await handler(request)

    return authenticate
