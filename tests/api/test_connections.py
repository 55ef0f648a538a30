"""``[api] max_connections``: a real tqd, real sockets. Over the limit a new
connection gets 503 too_many_connections (or is closed), the connections
already served keep working, the count drops as they close; WebSockets count;
refusals are logged throttled and counted in /metrics; the limit is cut to
what the open-file limit allows (tqd/api/connections.py)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.api.test_metrics import scrape, value
from tests.helpers.daemon import Daemon as ServeProcess
from tests.helpers.daemon import wait_until
from tests.helpers.tls import self_signed
from tests.storage.redis.waiting import eventually
from tqd.api import connections
from tqd.api.connections import ConnectionLimit, effective_limit, reserved_descriptors
from tqd.config import load_config
from tqd.daemon import Daemon

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def until(check: Callable[[], Any], deadline: float = 5.0) -> None:
    """Return once ``check()`` holds; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not check():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {deadline}s")
        await asyncio.sleep(0.005)


def address(tqd: Daemon) -> tuple[str, int]:
    host, port = tqd.url.split("://")[1].rsplit(":", 1)
    return host, int(port)


async def connect(tqd: Daemon, ssl_context: ssl.SSLContext | None = None) -> Conn:
    host, port = address(tqd)
    return await asyncio.open_connection(host, port, ssl=ssl_context)


async def opened(tqd: Daemon, n: int) -> list[Conn]:
    """``n`` idle connections, returned once tqd counts them all."""
    assert tqd.connections is not None
    before = tqd.connections.open
    conns = [await connect(tqd) for _ in range(n)]
    await until(lambda: tqd.connections.open == before + n)
    return conns


async def request(conn: Conn, method: str = "GET", path: str = "/healthz",
                  body: Any = None) -> tuple[int, dict[str, str], Any]:
    """One request on ``conn`` (kept open); (status, headers, decoded body)."""
    reader, writer = conn
    data = b"" if body is None else orjson.dumps(body)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
                 "Content-Type: application/json\r\n\r\n".encode() + data)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode().strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    raw = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(status_line.split()[1]), headers, orjson.loads(raw) if raw else None


async def closed_by_server(conn: Conn) -> bool:
    """Whether the server closed ``conn`` (EOF or reset) within 5 s; what
    came before is read and dropped. Closes ``conn`` too."""
    try:
        await asyncio.wait_for(conn[0].read(), 5)
    except ConnectionResetError:
        return True
    finally:
        conn[1].close()
    return conn[0].at_eof()


def close(*conns: Conn) -> None:
    for _, writer in conns:
        writer.close()


def assert_refused(answer: tuple[int, dict[str, str], Any]) -> None:
    status, headers, body = answer
    assert status == 503
    assert headers["connection"] == "close"
    assert headers["retry-after"] == "1"
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "too_many_connections"
    assert "[api] max_connections" in body["error"]["message"]


async def test_over_the_limit_a_connection_gets_503_and_the_others_are_served(start_tqd):
    tqd = await start_tqd(api={"max_connections": 3})
    limit = tqd.connections
    idle = await opened(tqd, 3)

    fourth = await connect(tqd)
    assert_refused(await request(fourth))
    assert await closed_by_server(fourth)
    # the connections already served are not cut, and keep being served
    for conn in idle:
        assert (await request(conn))[0] == 200
    assert limit.open == 3
    again = await connect(tqd)
    assert_refused(await request(again))
    close(again)

    # a slot freed is taken by the next connection
    close(idle[0])
    await until(lambda: limit.open == 2)
    fresh = await connect(tqd)
    assert (await request(fresh, "POST", "/v1/tasks", {"name": "tqd.noop"}))[0] == 201
    assert limit.open == 3

    close(fresh, *idle[1:])
    await until(lambda: limit.open == 0 and limit.refusing == 0)
    m = await scrape(tqd.url)  # the scrape's own connection is the one open
    assert value(m, "tqd_http_connections") == 1
    assert value(m, "tqd_http_connections_limit") == 3
    assert value(m, "tqd_http_connections_refused_total") == 2


async def test_a_burst_of_connections_is_cut_at_the_limit(start_tqd):
    # The connections of a burst are accepted before any of them is counted
    # as made: those arriving count too.
    tqd = await start_tqd(api={"max_connections": 3})
    conns = await asyncio.gather(*(connect(tqd) for _ in range(12)))
    statuses = sorted(a[0] for a in await asyncio.gather(*(request(c) for c in conns)))
    assert statuses == [200] * 3 + [503] * 9
    assert tqd.connections.refused == 9
    close(*conns)
    await until(lambda: tqd.connections.open == 0)


async def test_websocket_connections_count(start_tqd):
    tqd = await start_tqd(api={"max_connections": 2})
    limit = tqd.connections
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{tqd.url}/v1/events")
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        await until(lambda: limit.open == 1)
        [other] = await opened(tqd, 1)
        assert_refused(await request(await connect(tqd)))
        # both served connections still work: an enqueue on one is seen on the other
        status, _, task = await request(other, "POST", "/v1/tasks", {"name": "tqd.noop"})
        assert status == 201
        while (await ws.receive_json(timeout=5)).get("id") != task["id"]:
            pass
        await ws.close()
        await until(lambda: limit.open == 1)
        assert (await request(await connect(tqd)))[0] == 200
        close(other)


async def test_refusals_are_logged_once_then_summed_up(start_tqd, caplog):
    tqd = await start_tqd(api={"max_connections": 1})
    [held] = await opened(tqd, 1)
    with caplog.at_level(logging.WARNING, logger="tqd.api.connections"):
        for _ in range(15):
            assert_refused(await request(await connect(tqd)))
        lines = [r.getMessage() for r in caplog.records if r.name == "tqd.api.connections"]
        assert len(lines) == 1, lines
        assert "turned away a connection from 127.0.0.1:" in lines[0]
        assert "[api] max_connections" in lines[0]
        tqd.connections.close()  # as at shutdown: the refusals held back, summed up
        lines = [r.getMessage() for r in caplog.records if r.name == "tqd.api.connections"]
    assert len(lines) == 2 and "14 like it" in lines[1], lines
    assert tqd.connections.refused == 15
    close(held)


async def test_a_refused_client_is_closed_when_it_sends_nothing_or_too_many_are_refused(start_tqd):
    tqd = await start_tqd(api={"max_connections": 1})
    limit = tqd.connections
    [held] = await opened(tqd, 1)
    limit.refusal_timeout = 0.2
    silent = await connect(tqd)
    assert await closed_by_server(silent)  # no request within the timeout: no answer
    await until(lambda: limit.refusing == 0)

    limit.max_refusing = 0  # answering would hold more descriptors: closed at once
    rejected = await connect(tqd)
    rejected[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert await closed_by_server(rejected)
    assert limit.refused == 2
    assert (await request(held))[0] == 200
    close(held, silent, rejected)


async def test_a_refused_request_with_a_large_body_still_gets_its_answer(start_tqd):
    # The answer goes out once the head arrives; the rest of the body is read
    # and dropped (closing with unread bytes would reset the connection: the
    # client would get ECONNRESET while it still sends, and no answer).
    tqd = await start_tqd(api={"max_connections": 1})
    [held] = await opened(tqd, 1)
    reader, writer = await connect(tqd)
    body = b"[" + b"0," * 8_000_000 + b"0]"
    writer.write(b"POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                 b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    await writer.drain()
    writer.write(body)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 503 ")
    writer.write_eof()
    assert await closed_by_server((reader, writer))
    await until(lambda: tqd.connections.refusing == 0)
    close(held, (reader, writer))


async def test_tqd_serve_cuts_a_burst_at_the_limit_and_logs_it_once(tmp_path):
    # The real process, on uvloop (the tests above run on asyncio's loop).
    path = tmp_path / "tqd.toml"
    path.write_text("[api]\nmax_connections = 3\n")
    with ServeProcess(f"sqlite://{tmp_path}/t.db", config=path) as proc:
        host, port = proc.url.split("://")[1].rsplit(":", 1)
        conns = await asyncio.gather(*(asyncio.open_connection(host, int(port))
                                       for _ in range(12)))
        statuses = sorted(a[0] for a in await asyncio.gather(*(request(c) for c in conns)))
        assert statuses == [200] * 3 + [503] * 9
        close(*conns)

        async def settled():
            try:
                m = await scrape(proc.url)  # its own connection is the one left
            except AssertionError:  # 503: the closes are not all seen yet
                return None
            return value(m, "tqd_http_connections") == 1 and m

        m = await eventually(settled)
        # (scrapes made while the closes were not all seen yet were refused too)
        refused = int(value(m, "tqd_http_connections_refused_total"))
        assert refused >= 9
        assert proc.stderr.count("turned away a connection") == 1, proc.stderr
        assert proc.stop() == 0
        wait_until(lambda: f"{refused - 1} like it" in proc.stderr, message="the summary at exit")
    assert proc.stderr.count("turned away a connection") == 2


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1."""
    return self_signed(tmp_path_factory.mktemp("tls"))


async def test_over_tls_the_refusal_is_answered_too(start_tqd, certificate):
    cert, key = certificate
    tqd = await start_tqd(api={"max_connections": 1}, tls={"cert": str(cert), "key": str(key)})
    trusting = ssl.create_default_context(cafile=str(cert))
    held = await connect(tqd, trusting)
    await until(lambda: tqd.connections.open == 1)
    refused = await connect(tqd, trusting)
    assert_refused(await request(refused))
    assert (await request(held))[0] == 200
    close(held, refused)
    await until(lambda: tqd.connections.open == 0)


# -- the open-file limit ------------------------------------------------------------


def config(**api: Any) -> Any:
    return load_config(None, env={}, overrides={"api": api} if api else None, check_paths=False)


def test_the_limit_keeps_descriptors_for_the_store_logs_and_worker_slots(monkeypatch):
    cfg = config()
    reserve = reserved_descriptors(cfg)
    # the process, the refusals being answered, 4 for each of 100 worker slots
    assert reserve == connections.BASE_RESERVE + ConnectionLimit.max_refusing + 4 * 100
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: (65536, 65536))
    assert effective_limit(cfg) == (1024, None)
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: (1024, 4096))
    limit, why = effective_limit(cfg)
    assert limit == 1024 - reserve
    assert why is not None and "[api] max_connections = 1024" in why and f"at most {limit}" in why
    # a limit the reserve would eat whole still leaves a quarter to clients
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: (256, 256))
    assert effective_limit(cfg)[0] == 64
    redis = load_config(None, env={}, overrides={"storage": "redis://127.0.0.1:1/0"},
                        check_paths=False)
    assert reserved_descriptors(redis) == reserve + connections.REDIS_RESERVE
    monkeypatch.setattr(connections.resource, "getrlimit",
                        lambda _: (connections.resource.RLIM_INFINITY,) * 2)
    assert effective_limit(config(max_connections=100000)) == (100000, None)


@pytest.mark.parametrize(("chosen", "level"), [(5000, logging.WARNING), (None, logging.INFO)],
                         ids=["chosen: a warning", "the default: news"])
async def test_a_limit_the_file_limit_cannot_hold_is_cut_and_said(start_tqd, monkeypatch, caplog,
                                                                  chosen, level):
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: (1000, 1000))
    with caplog.at_level(logging.INFO, logger="tqd.daemon"):
        tqd = await start_tqd(**({"api": {"max_connections": chosen}} if chosen else {}))
    said = [r for r in caplog.records if "is more than the open-file limit allows" in r.getMessage()]
    assert [r.levelno for r in said] == [level]
    assert f"max_connections = {chosen or 1024}" in said[0].getMessage()
    assert tqd.connections.limit == 1000 - reserved_descriptors(tqd.config)
