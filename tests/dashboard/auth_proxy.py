"""A small HTTP proxy in front of tqd that demands a bearer token on /v1/.

Until tqd has tokens of its own (issue 9) this is how the tests make the API
answer 401: the page and its assets pass through, every /v1/ request without
``Authorization: Bearer <token>`` gets the API's 401 error shape, and the
proxy records the credentials each request carried.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
from aiohttp import web

_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "upgrade", "content-length"}


class AuthProxy:
    """Runs on its own thread and event loop; ``url`` is where it listens."""

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream = upstream
        self.token = token
        self.url = ""
        #: (path, Authorization header or None) of every /v1/ request.
        self.seen: list[tuple[str, str | None]] = []
        #: Sec-WebSocket-Protocol offers of WebSocket handshakes.
        self.ws_protocols: list[str] = []
        #: Cookie headers that reached the proxy (there must be none).
        self.cookies: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if "Cookie" in request.headers:
            self.cookies.append(request.headers["Cookie"])
        if request.path.startswith("/v1/"):
            auth = request.headers.get("Authorization")
            self.seen.append((request.path, auth))
            if request.headers.get("Upgrade", "").lower() == "websocket":
                self.ws_protocols.append(request.headers.get("Sec-WebSocket-Protocol", ""))
            if auth != f"Bearer {self.token}":
                return web.json_response(
                    {"error": {"code": "unauthorized", "message": "a valid bearer token is required"}},
                    status=401,
                )
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            return web.Response(body=body, status=upstream.status, headers=out)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def start(self) -> AuthProxy:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> AuthProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
