"""The http handler against real aiohttp servers: statuses, Retry-After,
timeouts, the signature, redirects and limits."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tqd.config import HttpClientConfig, HttpHandler
from tqd.errors import ConfigError
from tqd.ids import IdGenerator
from tqd.models import Task
from tqd.runtime.handlers.base import RawJSON, TaskContext, TaskFailed
from tqd.runtime.handlers.http import HttpPost, SharedSession, parse_retry_after

_ids = IdGenerator()
SECRET = "s3cret-for-tests"


def context(payload: bytes = b'{"n":1}', attempts: int = 0) -> TaskContext:
    return TaskContext(Task(id=_ids.new(), name="hook", queue="hooks", payload=payload,
                            attempts=attempts))


class Target:
    """A webhook receiver whose answer each test chooses; it records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Any = lambda request: web.json_response({"ok": True})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"path": request.path, "method": request.method,
                              "headers": dict(request.headers), "body": body})
        answer = self.answer(request)
        if asyncio.iscoroutine(answer):
            answer = await answer
        return answer


@pytest.fixture
async def target(aiohttp_server) -> AsyncIterator[tuple[Target, str]]:
    t = Target()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", t.handle)
    server = await aiohttp_server(app)
    yield t, str(server.make_url("/hook"))


@pytest.fixture
async def session() -> AsyncIterator[SharedSession]:
    s = SharedSession(HttpClientConfig())
    yield s
    await s.close()


def handler(url: str, session: SharedSession, **options: Any) -> HttpPost:
    return HttpPost(HttpHandler(url=url, **options), session, "tasks.hook.handler")


async def failure(h: HttpPost, ctx: TaskContext | None = None) -> TaskFailed:
    with pytest.raises(TaskFailed) as caught:
        await h.run(ctx or context())
    return caught.value


# -- success ------------------------------------------------------------------


async def test_2xx_completes_with_the_json_body(target, session):
    t, url = target
    ctx = context(b'{"order":42}', attempts=1)
    result = await handler(url, session, headers={"Authorization": "Bearer abc"}).run(ctx)
    assert result == RawJSON(b'{"ok":true}')
    [req] = t.requests
    assert req["method"] == "POST"
    assert req["body"] == b'{"order":42}'
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["Authorization"] == "Bearer abc"
    assert req["headers"]["Tqd-Task-Id"] == ctx.task_id
    assert req["headers"]["Tqd-Task-Name"] == "hook"
    assert req["headers"]["Tqd-Attempt"] == "2"
    assert "Tqd-Signature" not in req["headers"]


async def test_a_text_body_is_a_text_result_and_204_is_null(target, session):
    t, url = target
    t.answer = lambda r: web.Response(text="accepted\n", status=202)
    assert await handler(url, session).run(context()) == "accepted"
    t.answer = lambda r: web.Response(status=204)
    assert await handler(url, session).run(context()) is None


async def test_a_response_over_max_response_fails_without_retry(target, session):
    t, url = target
    t.answer = lambda r: web.Response(body=b"x" * 5000)
    err = await failure(handler(url, session, max_response=1000))
    assert err.retry is False
    assert "max_response" in err.message


# -- failures -------------------------------------------------------------------


async def test_500_retries_with_backoff(target, session):
    t, url = target
    t.answer = lambda r: web.Response(status=500, text="database down")
    err = await failure(handler(url, session))
    assert err.retry is True
    assert err.delay is None  # the task's backoff decides
    assert err.hold is None
    assert "answered 500: database down" in err.message


async def test_400_fails_without_retry(target, session):
    t, url = target
    t.answer = lambda r: web.json_response({"error": "bad order"}, status=400)
    err = await failure(handler(url, session))
    assert err.retry is False
    assert "answered 400" in err.message
    assert "bad order" in err.message


async def test_a_4xx_listed_in_retry_statuses_retries(target, session):
    t, url = target
    t.answer = lambda r: web.Response(status=409)
    assert (await failure(handler(url, session, retry_statuses=[409]))).retry is True
    t.answer = lambda r: web.Response(status=404)
    assert (await failure(handler(url, session, retry_statuses=[409]))).retry is False


async def test_429_with_retry_after_schedules_then_and_holds_the_queue(target, session):
    t, url = target
    t.answer = lambda r: web.Response(status=429, headers={"Retry-After": "7"})
    err = await failure(handler(url, session))
    assert err.retry is True
    assert err.delay == 7
    assert err.hold == 7


async def test_503_with_an_http_date_retry_after(target, session):
    t, url = target
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    t.answer = lambda r: web.Response(status=503, headers={"Retry-After": when})
    err = await failure(handler(url, session))
    assert 100 <= err.delay <= 121
    assert err.hold == err.delay


async def test_retry_after_is_capped(target, session):
    t, url = target
    t.answer = lambda r: web.Response(status=429, headers={"Retry-After": "999999"})
    err = await failure(handler(url, session, max_retry_after=30))
    assert err.delay == 30


async def test_429_without_retry_after_backs_off_and_holds_briefly(target, session):
    t, url = target
    t.answer = lambda r: web.Response(status=429)
    err = await failure(handler(url, session))
    assert err.retry is True
    assert err.delay is None
    assert err.hold == 1.0


def test_retry_after_forms():
    now = 1_000_000.0
    assert parse_retry_after("5", now) == 5
    assert parse_retry_after(" 2.5 ", now) == 2.5
    assert parse_retry_after("-3", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("Mon, 12 Jan 1970 13:46:40 GMT", now) == 0


async def test_a_slow_target_times_out_and_retries(target, session):
    t, url = target

    async def slow(request):
        await asyncio.sleep(5)
        return web.Response()

    t.answer = slow
    err = await failure(handler(url, session, timeout=0.3))
    assert err.retry is True
    assert err.kind == "http_timeout"
    assert "timed out after 0.3s" in err.message


async def test_a_refused_connection_retries(session, unused_tcp_port_factory):
    url = f"http://127.0.0.1:{unused_tcp_port_factory()}/hook"
    err = await failure(handler(url, session))
    assert err.retry is True
    assert err.kind == "http_connect"


# -- signature --------------------------------------------------------------------


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """What a receiver does (the README shows the same steps)."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp, given = parts["t"], parts["v1"]
    if abs(now - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


async def test_the_signature_verifies_at_the_receiver(target, session):
    t, url = target

    def check(request_headers, body):
        return verify(SECRET, request_headers["Tqd-Signature"], body, time.time())

    seen = []

    async def answer(request):
        seen.append(check(request.headers, await request.read()))
        return web.Response(status=200)

    t.answer = answer
    await handler(url, session, secret=SECRET).run(context(b'{"amount":10}'))
    assert seen == [True]
    [req] = t.requests
    # Another secret or another body does not verify.
    assert not verify("other", req["headers"]["Tqd-Signature"], req["body"], time.time())
    assert not verify(SECRET, req["headers"]["Tqd-Signature"], b'{"amount":99}', time.time())


async def test_the_secret_may_come_from_the_environment(target, session, monkeypatch):
    t, url = target
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    await handler(url, session, secret_env="HOOK_SECRET").run(context())
    [req] = t.requests
    assert verify(SECRET, req["headers"]["Tqd-Signature"], req["body"], time.time())
    monkeypatch.delenv("HOOK_SECRET")
    with pytest.raises(ConfigError, match="secret_env: variable HOOK_SECRET is not set"):
        handler(url, session, secret_env="HOOK_SECRET")


# -- redirects ----------------------------------------------------------------------


async def test_a_307_to_the_same_host_is_followed_with_the_body(target, session):
    t, url = target

    def answer(request):
        if request.path == "/hook":
            return web.Response(status=307, headers={"Location": "/v2/hook"})
        return web.json_response({"at": request.path})

    t.answer = answer
    assert await handler(url, session).run(context(b'{"x":1}')) == RawJSON(b'{"at":"/v2/hook"}')
    assert [(r["path"], r["method"], r["body"]) for r in t.requests] == [
        ("/hook", "POST", b'{"x":1}'), ("/v2/hook", "POST", b'{"x":1}')]


async def test_a_redirect_to_another_host_is_not_followed(target, session, aiohttp_server):
    t, url = target
    elsewhere_hits = []

    async def elsewhere(request):
        elsewhere_hits.append(dict(request.headers))
        return web.Response()

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", elsewhere)
    other_server = await aiohttp_server(other)
    for status in (307, 308, 302):
        t.answer = lambda r, s=status: web.Response(
            status=s, headers={"Location": str(other_server.make_url("/steal"))})
        err = await failure(handler(url, session, secret=SECRET,
                                    headers={"Authorization": "Bearer abc"}))
        assert err.retry is False
        assert err.kind == "http_redirect"
    assert elsewhere_hits == []


async def test_a_redirect_loop_ends(target, session):
    t, url = target
    t.answer = lambda r: web.Response(status=308, headers={"Location": "/hook"})
    err = await failure(handler(url, session))
    assert "more than 3 redirects" in err.message
    assert len(t.requests) == 4


# -- configuration -------------------------------------------------------------------


async def test_one_session_serves_every_handler(session):
    a = handler("http://127.0.0.1:1/a", session)
    b = handler("http://127.0.0.1:1/b", session)
    assert a._session is b._session
    assert session.get() is session.get()


async def test_connections_per_target_are_bounded(target):
    t, url = target
    inside = 0
    most = 0

    async def answer(request):
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.05)
        inside -= 1
        return web.Response()

    t.answer = answer
    shared = SharedSession(HttpClientConfig(connections_per_host=3))
    try:
        h = handler(url, shared)
        await asyncio.gather(*(h.run(context()) for _ in range(12)))
    finally:
        await shared.close()
    assert len(t.requests) == 12
    assert most == 3
