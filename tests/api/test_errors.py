"""Every error status of the API, each as {"error": {"code", "message"}}:
400 (naming the field), 404, 405, 409, 413 (before the body is read), 422,
500 (no traceback reaches the client) and 503 (store closed, draining)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from tests.api.conftest import Api, MakeApi

# (what is wrong, method, path, body as bytes, text the message must contain)
BAD_REQUESTS: list[tuple[str, str, str, bytes, str]] = [
    ("malformed JSON", "POST", "/v1/tasks", b'{"name": "tqd.noop"', "malformed JSON"),
    ("not UTF-8", "POST", "/v1/tasks", b'{"name": "\xff\xfe"}', "malformed JSON"),
    ("empty body", "POST", "/v1/tasks", b"", "body"),
    ("a JSON array, not an object", "POST", "/v1/tasks", b"[1, 2]", "body: expected `object`, got `array`"),
    ("a JSON string, not an object", "POST", "/v1/tasks", b'"tqd.noop"', "body: expected `object`"),
    ("name missing", "POST", "/v1/tasks", b'{"payload": 1}', "name"),
    ("name of the wrong type", "POST", "/v1/tasks", b'{"name": 5}', "name"),
    ("name not a valid name", "POST", "/v1/tasks", b'{"name": "../etc"}', "name"),
    ("unknown field", "POST", "/v1/tasks", b'{"name": "tqd.noop", "colour": "red"}', "colour"),
    ("queue of the wrong type", "POST", "/v1/tasks", b'{"name": "tqd.noop", "queue": []}', "queue"),
    ("queue not a valid name", "POST", "/v1/tasks", b'{"name": "tqd.noop", "queue": "a b"}', "queue"),
    ("priority of the wrong type", "POST", "/v1/tasks", b'{"name": "tqd.noop", "priority": "high"}', "priority"),
    ("priority a boolean", "POST", "/v1/tasks", b'{"name": "tqd.noop", "priority": true}', "priority"),
    ("priority a fraction", "POST", "/v1/tasks", b'{"name": "tqd.noop", "priority": 1.5}', "priority"),
    ("priority above 100", "POST", "/v1/tasks", b'{"name": "tqd.noop", "priority": 101}', "priority"),
    ("priority below -100", "POST", "/v1/tasks", b'{"name": "tqd.noop", "priority": -101}', "priority"),
    ("negative delay", "POST", "/v1/tasks", b'{"name": "tqd.noop", "delay": -1}', "delay"),
    ("delay of the wrong type", "POST", "/v1/tasks", b'{"name": "tqd.noop", "delay": "soon"}', "delay"),
    ("delay beyond ten years", "POST", "/v1/tasks", b'{"name": "tqd.noop", "delay": 1e12}', "delay"),
    ("run_at not a time", "POST", "/v1/tasks", b'{"name": "tqd.noop", "run_at": "tomorrow"}', "run_at"),
    ("run_at without an offset", "POST", "/v1/tasks", b'{"name": "tqd.noop", "run_at": "2030-01-01T00:00:00"}', "run_at"),
    ("delay and run_at", "POST", "/v1/tasks", b'{"name": "tqd.noop", "delay": 1, "run_at": "2030-01-01T00:00:00Z"}', "run_at"),
    ("max_attempts 0", "POST", "/v1/tasks", b'{"name": "tqd.noop", "max_attempts": 0}', "max_attempts"),
    ("max_attempts too large", "POST", "/v1/tasks", b'{"name": "tqd.noop", "max_attempts": 100000}', "max_attempts"),
    ("timeout 0", "POST", "/v1/tasks", b'{"name": "tqd.noop", "timeout": 0}', "timeout"),
    ("timeout of the wrong type", "POST", "/v1/tasks", b'{"name": "tqd.noop", "timeout": [1]}', "timeout"),
    ("empty idempotency_key", "POST", "/v1/tasks", b'{"name": "tqd.noop", "idempotency_key": ""}', "idempotency_key"),
    ("payload integer beyond 64 bits", "POST", "/v1/tasks", b'{"name": "tqd.noop", "payload": 1' + b"0" * 30 + b"}", "payload"),
    ("batch not a list", "POST", "/v1/tasks/batch", b'{"tasks": {"name": "tqd.noop"}}', "tasks"),
    ("batch without tasks", "POST", "/v1/tasks/batch", b"{}", "tasks"),
    ("batch item of the wrong type", "POST", "/v1/tasks/batch", b'{"tasks": [{"name": "tqd.noop"}, {"name": "tqd.noop", "priority": "x"}]}', "tasks[1].priority"),
    ("batch unknown field", "POST", "/v1/tasks/batch", b'{"tasks": [], "atomic": false}', "atomic"),
    ("list limit 0", "GET", "/v1/tasks?limit=0", b"", "limit"),
    ("list limit not a number", "GET", "/v1/tasks?limit=ten", b"", "limit"),
    ("list limit too large", "GET", "/v1/tasks?limit=1000000", b"", "limit"),
    ("list unknown state", "GET", "/v1/tasks?state=sleeping", b"", "state"),
    ("list malformed cursor", "GET", "/v1/tasks?cursor=not-a-cursor", b"", "cursor"),
    ("wait not a number", "GET", "/v1/tasks/00000000000000000000?wait=abc", b"", "wait"),
    ("wait negative", "GET", "/v1/tasks/00000000000000000000?wait=-1", b"", "wait"),
    ("wait over 60", "GET", "/v1/tasks/00000000000000000000?wait=61", b"", "wait"),
    ("wait NaN", "GET", "/v1/tasks/00000000000000000000?wait=nan", b"", "wait"),
    ("purge without state", "POST", "/v1/queues/default/purge", b"{}", "state"),
    ("purge of processing tasks", "POST", "/v1/queues/default/purge", b'{"state": "processing"}', "state"),
    ("purge of an unknown state", "POST", "/v1/queues/default/purge", b'{"state": "old"}', "state"),
    ("purge unknown field", "POST", "/v1/queues/default/purge", b'{"state": "failed", "all": true}', "all"),
    ("queue name not valid", "POST", "/v1/queues/bad%20name/pause", b"", "queue"),
]


@pytest.mark.parametrize(("what", "method", "path", "body", "names"), BAD_REQUESTS,
                         ids=[c[0] for c in BAD_REQUESTS])
async def test_400_names_what_is_wrong(
    api: Api, what: str, method: str, path: str, body: bytes, names: str
) -> None:
    status, err = await api.call(method, path, raw=body)
    assert status == 400, err
    assert err["error"]["code"] == "bad_request"
    assert names in err["error"]["message"], err
    assert "Traceback" not in err["error"]["message"]
    assert (await api.store.queue("default")).counts["pending"] == 0


async def test_400_for_a_bad_idempotency_key_header(api: Api) -> None:
    for key in ["has space", "x" * 256]:
        status, err = await api.call("POST", "/v1/tasks", {"name": "tqd.noop"},
                                     headers={"Idempotency-Key": key})
        assert status == 400 and "Idempotency-Key" in err["error"]["message"]


NOT_FOUND = [
    ("GET", "/v1/tasks/0000000000NOSUCHTASK"),
    ("POST", "/v1/tasks/0000000000NOSUCHTASK/cancel"),
    ("POST", "/v1/tasks/0000000000NOSUCHTASK/retry"),
    ("DELETE", "/v1/tasks/0000000000NOSUCHTASK"),
    ("GET", "/v1/queues/never-named"),
    ("POST", "/v1/queues/never-named/redrive"),
    ("POST", "/v1/queues/never-named/purge"),
    ("GET", "/v1/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), NOT_FOUND)
async def test_404(api: Api, method: str, path: str) -> None:
    body = {"state": "failed"} if path.endswith("purge") else None
    status, err = await api.call(method, path, body)
    assert status == 404, err
    assert err["error"]["code"] == "not_found"
    assert err["error"]["message"]


async def test_404_message_names_the_task(api: Api) -> None:
    _, err = await api.call("GET", "/v1/tasks/0000000000NOSUCHTASK")
    assert "0000000000NOSUCHTASK" in err["error"]["message"]


async def test_405_is_json_too(api: Api) -> None:
    status, err = await api.call("PUT", "/v1/tasks")
    assert status == 405 and err["error"]["code"] == "method_not_allowed"


async def test_409_delete_while_processing(api: Api) -> None:
    task = await api.in_state("processing")
    status, err = await api.call("DELETE", f"/v1/tasks/{task['id']}")
    assert status == 409 and err["error"]["code"] == "conflict"
    assert "processing" in err["error"]["message"]
    assert (await api.store.get(task["id"])) is not None


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
async def test_409_cancel_of_a_finished_task(api: Api, state: str) -> None:
    task = await api.in_state(state)
    status, err = await api.call("POST", f"/v1/tasks/{task['id']}/cancel")
    assert status == 409 and err["error"]["code"] == "conflict"
    assert state in err["error"]["message"]
    assert (await api.store.get(task["id"])).state == state


@pytest.mark.parametrize("state", ["pending", "scheduled", "processing", "completed"])
async def test_409_retry_of_a_task_that_is_not_failed_or_cancelled(api: Api, state: str) -> None:
    task = await api.in_state(state)
    status, err = await api.call("POST", f"/v1/tasks/{task['id']}/retry")
    assert status == 409 and err["error"]["code"] == "conflict"
    assert state in err["error"]["message"]
    assert (await api.store.get(task["id"])).state == state


# -- 413 ------------------------------------------------------------------------


async def _raw_exchange(api: Api, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send only ``head`` (request line and headers) and read the answer."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head)
        await writer.drain()
        raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        return status, headers, body
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/tasks/batch", "/v1/queues/default/purge"])
async def test_413_before_the_body_is_sent(api: Api, path: str) -> None:
    """Content-Length over the limit: the answer comes though not one byte of
    the body was sent (a server waiting for the body would time out here)."""
    limit = api.svc.config.api.max_body_size
    assert limit == 1024 * 1024  # the default
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {limit + 1}\r\n\r\n"
    ).encode()
    status, _, body = await _raw_exchange(api, head)
    assert status == 413
    err = orjson.loads(body)["error"]
    assert err["code"] == "payload_too_large"
    assert "body" in err["message"] and str(limit) in err["message"]


async def test_413_for_a_chunked_body_over_the_limit(make_api: MakeApi) -> None:
    api = await make_api(api={"max_body_size": 4096})

    async def chunks():
        yield b'{"name": "tqd.echo", "payload": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}'

    async with api.client.post("/v1/tasks", data=chunks(),
                               headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert (await api.store.queue("default")).counts["pending"] == 0


async def test_a_body_at_the_limit_is_accepted(make_api: MakeApi) -> None:
    api = await make_api(api={"max_body_size": 4096})
    prefix, suffix = b'{"name": "tqd.echo", "payload": "', b'"}'
    body = prefix + b"y" * (4096 - len(prefix) - len(suffix)) + suffix
    assert len(body) == 4096
    status, task = await api.call("POST", "/v1/tasks", raw=body)
    assert status == 201 and len(task["payload"]) == 4096 - len(prefix) - len(suffix)


# -- 422 ------------------------------------------------------------------------


async def test_422_for_an_unknown_task_lists_the_known_ones(make_api: MakeApi) -> None:
    api = await make_api(tasks={"resize": {"handler": "builtin:echo"}})
    status, err = await api.call("POST", "/v1/tasks", {"name": "resise"})
    assert status == 422
    assert err["error"]["code"] == "unknown_task"
    message = err["error"]["message"]
    assert "resise" in message
    for known in ["resize", "tqd.echo", "tqd.fail", "tqd.noop", "tqd.sleep"]:
        assert known in message
    status, err = await api.call("POST", "/v1/tasks/batch", {"tasks": [{"name": "tqd.noop"}, {"name": "nope"}]})
    assert status == 422 and "tasks[1]" in err["error"]["message"] and "tqd.noop" in err["error"]["message"]


# -- 500 and 503 ------------------------------------------------------------------


async def test_500_hides_the_exception_and_logs_it(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(task_id: str) -> Any:
        raise RuntimeError("secret-connection-string-xyz")

    monkeypatch.setattr(api.store, "get", broken)
    with caplog.at_level(logging.ERROR, logger="tqd.api"):
        async with api.client.get("/v1/tasks/00000000000000000000") as resp:
            assert resp.status == 500
            text = await resp.text()
    assert "secret" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert orjson.loads(text)["error"]["code"] == "internal"
    (record,) = [r for r in caplog.records if r.name == "tqd.api"]
    # the operator's log names it, in one line (the traceback only at DEBUG)
    assert record.exc_info is None
    assert "RuntimeError: secret-connection-string-xyz" in record.getMessage()


STORE_CALLS = [
    ("POST", "/v1/tasks", {"name": "tqd.noop"}),
    ("POST", "/v1/tasks/batch", {"tasks": [{"name": "tqd.noop"}]}),
    ("GET", "/v1/tasks/00000000000000000000", None),
    ("GET", "/v1/tasks", None),
    ("POST", "/v1/tasks/00000000000000000000/cancel", None),
    ("POST", "/v1/tasks/00000000000000000000/retry", None),
    ("DELETE", "/v1/tasks/00000000000000000000", None),
    ("GET", "/v1/queues", None),
    ("GET", "/v1/queues/default", None),
    ("POST", "/v1/queues/default/pause", None),
    ("POST", "/v1/queues/default/purge", {"state": "failed"}),
]


@pytest.mark.parametrize(("method", "path", "body"), STORE_CALLS)
async def test_503_when_storage_is_unavailable(
    api: Api, method: str, path: str, body: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await api.store.close()
    with caplog.at_level(logging.WARNING, logger="tqd.api"):
        status, err = await api.call(method, path, body)
    assert status == 503, err
    assert err["error"]["code"] == "storage_unavailable"
    assert "storage" in err["error"]["message"]
    # one line (an outage's first 503), no traceback
    [rec] = [r for r in caplog.records if r.name == "tqd.api"]
    assert rec.levelno == logging.WARNING and "503" in rec.getMessage() and rec.exc_info is None


async def test_readyz_and_healthz_with_storage_unavailable(api: Api) -> None:
    await api.store.close()
    status, body = await api.call("GET", "/readyz")
    assert status == 503 and body["status"] == "unavailable" and body["reason"]
    status, body = await api.call("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}


async def test_503_while_draining(api: Api) -> None:
    task = await api.enqueue()
    api.svc.draining = True
    for path, body in [("/v1/tasks", {"name": "tqd.noop"}),
                       ("/v1/tasks/batch", {"tasks": [{"name": "tqd.noop"}]})]:
        status, err = await api.call("POST", path, body)
        assert status == 503 and err["error"]["code"] == "shutting_down"
    status, body = await api.call("GET", "/readyz")
    assert status == 503 and body["status"] == "draining"
    # Reads and control still work while draining.
    status, body = await api.call("GET", f"/v1/tasks/{task['id']}")
    assert status == 200
    status, body = await api.call("POST", f"/v1/tasks/{task['id']}/cancel")
    assert status == 200 and body["state"] == "cancelled"
    assert (await api.store.queue("default")).counts["pending"] == 0
