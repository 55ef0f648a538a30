"""The WebSocket /v1/events against a real tqd with tokens: the token in a
header or as the sub-protocol ``bearer.<token>``, and each limit of the
stream answered on its own while other clients keep streaming."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.helpers.daemon import Daemon

from .conftest import TOKENS, token_config

MAX_CLIENTS = 3


@pytest.fixture(scope="module")
def tqd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder: Path = tmp_path_factory.mktemp("ws")
    tokens = "".join(f'[[tokens]]\nname = "{t["name"]}"\nhash = "{t["hash"]}"\nscope = "{t["scope"]}"\n'
                     for t in token_config("read"))
    (folder / "tqd.toml").write_text(f"[events]\nmax_clients = {MAX_CLIENTS}\n\n{tokens}")
    with Daemon(f"sqlite://{folder}/t.db", config=folder / "tqd.toml") as daemon:
        yield daemon


def bearer_protocols() -> tuple[str, str]:
    return ("tqd", "bearer." + TOKENS["read"])


async def _next(ws: aiohttp.ClientWebSocketResponse) -> dict:
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return orjson.loads(msg.data)


async def test_the_handshake_needs_a_token(tqd: Daemon) -> None:
    url = f"{tqd.url}/v1/events"
    async with aiohttp.ClientSession() as s:
        for protocols in ((), ("tqd",), ("tqd", "bearer.tqd_wrong-token-000000000000000")):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(url, protocols=protocols)
            assert refused.value.status == 401
            assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
        async with s.ws_connect(url, protocols=bearer_protocols()) as ws:
            assert ws.protocol == "tqd"  # never the bearer.<token> one
            assert (await _next(ws))["type"] == "hello"
        async with s.ws_connect(url, headers={"Authorization": f"Bearer {TOKENS['read']}"}) as ws:
            assert (await _next(ws))["type"] == "hello"


async def test_each_limit_of_the_stream_answers_on_its_own(tqd: Daemon) -> None:
    url = f"{tqd.url}/v1/events"
    async with aiohttp.ClientSession() as s:
        steady = await s.ws_connect(url, protocols=bearer_protocols())
        assert (await _next(steady))["type"] == "hello"
        # a subscription of too many queues: an error message naming the limit
        ws = await s.ws_connect(url, protocols=bearer_protocols())
        await _next(ws)
        await ws.send_str(orjson.dumps({"subscribe": [f"q{i}" for i in range(1001)]}).decode())
        error = await _next(ws)
        assert error == {"type": "error", "error": {
            "code": "bad_request", "message": "subscribe: at most 1000 queues"}}
        # a message over 64 KiB: closed with 1009 (message too big)
        await ws.send_str("x" * 70_000)
        closed = await ws.receive(timeout=10)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009
        # too many clients at once: 503 naming the limit
        extra = [await s.ws_connect(url, protocols=bearer_protocols())
                 for _ in range(MAX_CLIENTS - 1)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(url, protocols=bearer_protocols())
        assert refused.value.status == 503
        for other in extra:
            await other.close()
        # the first client streams on through all of it (its first counts arrive)
        msg = await asyncio.wait_for(_next(steady), timeout=10)
        assert msg["type"] in ("queues", "task")
        await steady.close()
