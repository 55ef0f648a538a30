"""GET /v1/events: a WebSocket of task changes and queue counts."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from datetime import datetime

import aiohttp
import orjson
import pytest

from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401
from tqd.api.events import CLOSE_TOO_SLOW


class Stream:
    """A WebSocket client that collects messages as they come."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict] = []

    async def next(self, deadline: float = 10.0) -> dict:
        msg = await self.ws.receive(timeout=deadline)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        body = orjson.loads(msg.data)
        self.messages.append(body)
        return body

    async def until(self, check, deadline: float = 10.0) -> dict:
        """Read messages until one satisfies ``check``; return it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            body = await self.next(max(0.01, end - loop.time()))
            if check(body):
                return body

    def tasks(self, task_id: str | None = None) -> list[tuple[str, str]]:
        return [(m["queue"], m["state"]) for m in self.messages
                if m["type"] == "task" and (task_id is None or m["id"] == task_id)]


@pytest.fixture
async def connect(tqd):
    sessions: list[aiohttp.ClientSession] = []

    async def open_stream(query: str = "", url: str | None = None) -> Stream:
        session = aiohttp.ClientSession()
        sessions.append(session)
        ws = await session.ws_connect(f"{url or tqd.url}/v1/events{query}")
        return Stream(ws)

    yield open_stream
    for s in sessions:
        await s.close()


async def enqueue(url: str, queue: str = "default", name: str = "tqd.noop", n: int = 1) -> list:
    async with aiohttp.ClientSession() as s:
        body = {"tasks": [{"name": name, "queue": queue}] * n}
        async with s.post(f"{url}/v1/tasks/batch", json=body) as resp:
            assert resp.status == 201, await resp.text()
            return [t["id"] for t in (await resp.json())["tasks"]]


async def test_a_client_sees_a_task_go_pending_processing_completed(tqd, connect):
    stream = await connect()
    assert await stream.next() == {"type": "hello", "queues": None}
    [task_id] = await enqueue(tqd.url)
    done = await stream.until(lambda m: m.get("id") == task_id and m["state"] == "completed")
    assert [s for _, s in stream.tasks(task_id)] == ["pending", "processing", "completed"]
    assert set(done) == {"type", "id", "queue", "name", "state", "at"}
    assert (done["queue"], done["name"]) == ("default", "tqd.noop")
    assert datetime.fromisoformat(done["at"].replace("Z", "+00:00")).year >= 2024
    counts = await stream.until(lambda m: m["type"] == "queues"
                                and m["queues"][0]["counts"]["completed"] == 1)
    async with aiohttp.ClientSession() as s, s.get(tqd.url + "/v1/queues") as resp:
        assert counts["queues"] == (await resp.json())["queues"]


async def test_a_subscription_narrows_and_can_change(tqd, connect):
    stream = await connect("?queues=a,c")
    assert await stream.next() == {"type": "hello", "queues": ["a", "c"]}
    await enqueue(tqd.url, "b")
    [a_id] = await enqueue(tqd.url, "a")
    await stream.until(lambda m: m.get("id") == a_id and m["state"] == "completed")
    assert {q for q, _ in stream.tasks()} == {"a"}
    # the counts are of every queue, whatever the subscription
    queues = await stream.until(lambda m: m["type"] == "queues"
                                and {"a", "b"} <= {q["name"] for q in m["queues"]})
    assert "default" in {q["name"] for q in queues["queues"]}

    await stream.ws.send_str('{"subscribe": ["b"]}')  # not answered: it just takes effect
    [first_b] = await enqueue(tqd.url, "b")
    await stream.until(lambda m: m.get("id") == first_b and m["state"] == "completed")
    stream.messages.clear()
    await enqueue(tqd.url, "a")
    [b_id] = await enqueue(tqd.url, "b")
    await stream.until(lambda m: m.get("id") == b_id and m["state"] == "completed")
    assert {q for q, _ in stream.tasks()} == {"b"}

    await stream.ws.send_str('{"subscribe": []}')  # no task messages at all
    await stream.ws.send_str('{"subscribe": null}')  # every queue again
    [c_id] = await enqueue(tqd.url, "c")
    await stream.until(lambda m: m.get("id") == c_id and m["state"] == "completed")
    assert not any(m["type"] == "hello" for m in stream.messages)  # hello comes only first


async def test_the_tqd_sub_protocol_is_chosen_when_offered(tqd):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{tqd.url}/v1/events", protocols=("tqd", "bearer.x")) as ws:
            assert ws.protocol == "tqd"
            assert orjson.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
        async with s.ws_connect(f"{tqd.url}/v1/events") as ws:  # none offered: none chosen
            assert ws.protocol is None


@pytest.mark.parametrize("message, says", [
    ("not json", "malformed JSON"),
    ('{"subscribe": "a"}', "subscribe:"),
    ('{"subscribe": ["bad name"]}', "subscribe:"),
    ('{"other": 1}', "expected"),
])
async def test_a_message_that_is_not_understood_is_answered_not_fatal(tqd, connect, message, says):
    stream = await connect()
    await stream.next()
    await stream.ws.send_str(message)
    error = await stream.until(lambda m: m["type"] == "error")
    assert error["error"]["code"] == "bad_request" and says in error["error"]["message"]
    [task_id] = await enqueue(tqd.url)  # still streaming
    await stream.until(lambda m: m.get("id") == task_id)


async def test_requests_that_are_not_websockets_or_name_bad_queues_get_400(tqd, http):
    async with http.get("/v1/events") as resp:
        assert resp.status == 400
        assert "WebSocket" in (await resp.json())["error"]["message"]
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(f"{tqd.url}/v1/events?queues=ok,no%20t")
        assert err.value.status == 400


@pytest.mark.parametrize("query", ["", "?queues=held"])
async def test_a_burst_beyond_the_buffer_is_one_lagged_message(start_tqd, query):
    tqd = await start_tqd(events={"buffer": 5, "interval": 0.3})
    async with aiohttp.ClientSession() as s:
        for queue in ("held", "other"):
            async with s.post(f"{tqd.url}/v1/queues/{queue}/pause"):
                pass
    async with aiohttp.ClientSession() as session:
        stream = Stream(await session.ws_connect(f"{tqd.url}/v1/events{query}"))
        await stream.next()
        await enqueue(tqd.url, "other", n=20)  # not followed by ?queues=held
        await enqueue(tqd.url, "held", n=50)
        lagged = await stream.until(lambda m: m["type"] == "lagged")
        # none of the burst is sent, only how much of it there was
        assert stream.tasks() == []
        assert lagged["dropped"] == (70 if not query else 50)
        assert tqd.services.events.dropped == lagged["dropped"]
        # a burst within the buffer arrives whole
        ids = await enqueue(tqd.url, "held", n=5)
        await stream.until(lambda m: m.get("id") == ids[-1])
        assert [q for q, _ in stream.tasks()] == ["held"] * 5


async def test_events_of_every_process_reach_every_subscriber(start_tqd, redis_server,  # noqa: F811
                                                              redis_prefix):  # noqa: F811
    shared = {"storage": redis_server.url, "redis": {"prefix": redis_prefix}}
    watcher = await start_tqd(worker={"enabled": False}, **shared)
    worker = await start_tqd(**shared)
    async with aiohttp.ClientSession() as session:
        stream = Stream(await session.ws_connect(f"{watcher.url}/v1/events"))
        await stream.next()
        [task_id] = await enqueue(worker.url)  # enqueued and run by the other process
        await stream.until(lambda m: m.get("id") == task_id and m["state"] == "completed")
        assert [s for _, s in stream.tasks(task_id)] == ["pending", "processing", "completed"]


# -- a client that does not read ------------------------------------------------


async def open_raw_websocket(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake by hand on a socket with a tiny receive buffer;
    the StreamReader stops reading from the socket after about 2 KiB, so a
    client that does not read really does not read."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frames_until_close(reader: asyncio.StreamReader) -> tuple[int, bytes, int]:
    """Read server frames until the close frame: (code, reason, text frames before it)."""
    texts = 0
    while True:
        b0, b1 = await reader.readexactly(2)
        size = b1 & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(size)
        if b0 & 0x0F == 0x8:
            return struct.unpack("!H", payload[:2])[0], payload[2:], texts
        texts += 1


async def test_a_client_that_stops_reading_is_closed_with_4008(start_tqd):
    tqd = await start_tqd(events={"buffer": 4096, "interval": 0.01, "stall_timeout": 0.5})
    hub = tqd.services.events
    async with aiohttp.ClientSession() as s, s.post(tqd.url + "/v1/queues/held/pause"):
        pass
    reader, writer = await open_raw_websocket(tqd.url)
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while not hub.closed_slow:  # fill its socket until the server gives up on it
            assert loop.time() < end, "the stalled client was never closed"
            await enqueue(tqd.url, "held", n=1000)
        code, reason, texts = await asyncio.wait_for(read_frames_until_close(reader), 10)
        assert code == CLOSE_TOO_SLOW == 4008
        assert b"too slow" in reason
        assert texts > 0
        loop_end = loop.time() + 10
        while hub.clients:
            assert loop.time() < loop_end
            await asyncio.sleep(0.02)
    finally:
        writer.close()
