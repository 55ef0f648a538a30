"""Which web pages may talk to the API: CORS, the origin check, the host check.

A browser lets any page send requests to any address, tqd on localhost
included; these guards keep a page from another site from using a tqd it
can reach through its visitor's browser.

- **CORS** is off unless ``[api] cors_origins`` lists origins. For a listed
  origin, a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is
  answered 204 without a token, and every answer carries
  ``Access-Control-Allow-Origin`` for it. A preflight from any other origin
  gets 403 and no CORS header, so the browser never sends the request.
- **Origin check**, when no tokens are configured: a POST, PUT, PATCH or
  DELETE, or a WebSocket handshake, whose ``Origin`` is neither this server
  (the dashboard) nor listed gets 403. Without tokens nothing but the network
  says who may act, so a page of another site must not act through its
  visitor's browser (browsers send ``Origin`` with every cross-site POST and
  every WebSocket handshake; a WebSocket is not covered by CORS at all).
  Cross-origin GETs pass: they change nothing, and without CORS headers the
  page cannot read the answer. With tokens the token is the authority, and a
  page of another site has none. curl and programs send no ``Origin``.
- **Host check** (DNS rebinding), when no tokens are configured and tqd
  listens on loopback: a request must be addressed to a loopback name
  (``localhost``, ``127.0.0.1``, ``[::1]``) or to the host of a listed
  origin. Otherwise a site whose name resolves first to itself and then to
  127.0.0.1 would be "same origin" with tqd in its visitor's browser.

Behind a reverse proxy that rewrites ``Host``, list the public origin in
``[api] cors_origins`` (or configure tokens).
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from tqd.api.app import SERVICES, json_response
from tqd.errors import Forbidden
from tqd.exposure import is_loopback

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"
EXPOSE_HEADERS = "Location, Retry-After, WWW-Authenticate"
PREFLIGHT_MAX_AGE = "600"


def _forbidden(message: str) -> web.Response:
    return json_response(Forbidden(message).to_json(), status=Forbidden.status)


def _host_name(host_header: str) -> str:
    """``[::1]:7411`` → ``::1``; ``localhost:7411`` → ``localhost``."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def _loopback_name(host: str) -> bool:
    return is_loopback(host) or host.lower().endswith(".localhost")


def _same_origin(request: web.Request, origin: str) -> bool:
    host = request.headers.get(hdrs.HOST)
    _, sep, netloc = origin.partition("://")
    return bool(sep and host) and netloc.lower() == host.lower()


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def _origin_hosts(origins: list[str]) -> set[str]:
    """The host names of the listed origins (``https://a.example:8443`` → ``a.example``)."""
    return {_host_name(o.partition("://")[2]).lower() for o in origins if o != "*"}


def _add_cors_headers(headers: Any, origin: str) -> None:
    headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
    headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSE_HEADERS
    vary = headers.get(hdrs.VARY)
    headers[hdrs.VARY] = f"{vary}, Origin" if vary and "origin" not in vary.lower() else "Origin"


def cors_middleware() -> Any:
    """The middleware applying the three guards of the module doc."""

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        config = request.app[SERVICES].config
        origins = config.api.cors_origins
        host = request.headers.get(hdrs.HOST)
        if host is not None and not config.tokens and is_loopback(config.host):
            name = _host_name(host)
            if not _loopback_name(name) and name.lower() not in _origin_hosts(origins):
                return _forbidden(
                    f"Host {name!r} is not a loopback name: without tokens tqd answers only "
                    "requests addressed to localhost (a guard against DNS rebinding); "
                    "configure [[tokens]], or list the origin in [api] cors_origins"
                )
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return await handler(request)
        allowed = "*" in origins or origin in origins
        if request.method == "OPTIONS" and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers:
            if not allowed:
                return _forbidden(
                    f"origin {origin!r} may not call this API (CORS allows "
                    f"{', '.join(origins) or 'no origin'}; see [api] cors_origins)"
                )
            response = web.Response(status=204)
            _add_cors_headers(response.headers, origin)
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ALLOW_METHODS
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ALLOW_HEADERS
            response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = PREFLIGHT_MAX_AGE
            return response
        if not allowed:
            acts = request.method not in _SAFE_METHODS or _is_websocket(request)
            if acts and not config.tokens and not _same_origin(request, origin):
                return _forbidden(
                    f"cross-origin request from {origin!r} refused; list the origin in "
                    "[api] cors_origins to allow it"
                )
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _add_cors_headers(exc.headers, origin)
            raise
        if not response.prepared:  # a WebSocket has sent its headers already
            _add_cors_headers(response.headers, origin)
        return response

    return guard
