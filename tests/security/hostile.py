"""Hostile requests, sent as raw bytes over a socket, with the answer each must get.

Each case is a label, the bytes sent, the status expected and a piece of the
message expected. ``python -m tests.security.hostile URL`` sends them all to a
running tqd and prints the Markdown table kept in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.parse
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Case:
    label: str
    data: bytes
    status: int
    message: str


@dataclass(frozen=True)
class Answer:
    status: int
    message: str  # the JSON error message, or the text aiohttp answered


def request(method: str, path: str, body: bytes | None = None, *,
            ctype: str | None = "application/json", headers: str = "") -> bytes:
    """One HTTP/1.1 request as bytes (Connection: close)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}"
    if body is not None:
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def enqueue(body: bytes, **kw: str) -> bytes:
    return request("POST", "/v1/tasks", body, **kw)


def task(**fields: object) -> bytes:
    return orjson.dumps({"name": "tqd.noop", **fields})


def nested(depth: int) -> bytes:
    return b'{"name": "tqd.noop", "payload": ' + b"[" * depth + b"]" * depth + b"}"


QUEUE_RULE = "queue: 1 to 128 letters"
CASES: list[Case] = [
    # malformed bodies
    Case("truncated JSON", enqueue(b'{"name": '), 400, "malformed JSON body: input data was truncated"),
    Case("not JSON at all", enqueue(b"name=tqd.noop"), 400, "malformed JSON body"),
    Case("invalid UTF-8 in a string", enqueue(b'{"name": "tqd.noop", "payload": "\xff\xfe"}'), 400,
         "malformed JSON body: not valid UTF-8"),
    Case("NaN", enqueue(b'{"name": "tqd.noop", "payload": NaN}'), 400,
         "malformed JSON body: invalid character"),
    Case("Infinity", enqueue(b'{"name": "tqd.noop", "payload": [Infinity]}'), 400,
         "malformed JSON body: invalid character"),
    Case("number 1e999", enqueue(b'{"name": "tqd.noop", "payload": 1e999}'), 400,
         "payload: number out of range"),
    Case("integer beyond 64 bits", enqueue(b'{"name": "tqd.noop", "payload": 123456789012345678901234567890}'),
         400, "payload: an integer is outside the 64-bit range"),
    Case("priority 1e300", enqueue(b'{"name": "tqd.noop", "priority": 1e300}'), 400, "priority: expected `int"),
    Case("priority 101", enqueue(task(priority=101)), 400, "priority: expected `int` <= 100"),
    Case("payload nested 33 deep", enqueue(nested(33)), 400,
         "payload: nested deeper than 32 levels (the limit, [api] max_depth)"),
    Case("payload nested 300 deep", enqueue(nested(300)), 400, "payload: nested deeper than 32 levels"),
    Case("body nested 100000 deep", enqueue(nested(100_000)), 400, "body: nested deeper than 32 levels"),
    Case("batch payload nested 40 deep",
         request("POST", "/v1/tasks/batch", b'{"tasks": [{"name": "tqd.noop"}, ' + nested(40) + b"]}"),
         400, "tasks[1].payload: nested deeper than 32 levels"),
    Case("empty body", enqueue(b""), 400, "body: a JSON object is required"),
    Case("whitespace body", enqueue(b"  \n "), 400, "body: a JSON object is required"),
    Case("array instead of object", enqueue(b"[]"), 400, "expected `object`, got `array`"),
    Case("unknown field", enqueue(task(command="rm -rf /")), 400, "command: unknown field"),
    Case("missing name", enqueue(b'{"payload": 1}'), 400, "name: required field missing"),
    # content types
    Case("Content-Type text/plain", enqueue(task(), ctype="text/plain"), 415,
         "Content-Type: expected application/json, got 'text/plain'"),
    Case("Content-Type form", enqueue(task(), ctype="application/x-www-form-urlencoded"), 415,
         "got 'application/x-www-form-urlencoded'"),
    Case("Content-Type multipart", enqueue(task(), ctype="multipart/form-data; boundary=x"), 415,
         "got 'multipart/form-data'"),
    # names
    Case("task name with {", enqueue(task(name="a{b}")), 400, "name: not a valid task name"),
    Case("task name with :", enqueue(task(name="a:b")), 400, "name: not a valid task name"),
    Case("task name with *", enqueue(task(name="*")), 400, "name: not a valid task name"),
    Case("task name with newline", enqueue(task(name="a\nb")), 400, "name: not a valid task name"),
    Case("task name ../", enqueue(task(name="../x")), 400, "name: not a valid task name"),
    Case("task name of 129 chars", enqueue(task(name="a" * 129)), 400, "name: not a valid task name"),
    Case("unknown task name", enqueue(task(name="no.such.task")), 422, "unknown task 'no.such.task'"),
    Case("queue with {", enqueue(task(queue="q{1}")), 400, "queue: 1 to 128 letters"),
    Case("queue with :", enqueue(task(queue="a:b")), 400, "queue: 1 to 128 letters"),
    Case("queue *", enqueue(task(queue="*")), 400, "queue: 1 to 128 letters"),
    Case("queue with newline", enqueue(task(queue="a\nb")), 400, "queue: 1 to 128 letters"),
    Case("queue ../etc", enqueue(task(queue="../etc")), 400, "queue: 1 to 128 letters"),
    Case("path queue %7Bq%7D", request("POST", "/v1/queues/%7Bq%7D/pause"), 404, "no route for POST"),
    Case("path queue a:b", request("POST", "/v1/queues/a:b/pause"), 400, QUEUE_RULE),
    Case("path queue *", request("GET", "/v1/queues/*"), 400, QUEUE_RULE),
    Case("path queue %0A", request("GET", "/v1/queues/a%0Ab"), 400, QUEUE_RULE),
    Case("path queue ..%2F..%2Fetc", request("GET", "/v1/queues/..%2F..%2Fetc"), 400, QUEUE_RULE),
    Case("path /v1/queues/../tasks", request("GET", "/v1/queues/../tasks"), 404, "no route"),
    Case("path task id *", request("GET", "/v1/tasks/*"), 400, "id: '*' is not a task id"),
    Case("path task id a:b", request("POST", "/v1/tasks/a:b/cancel"), 400, "is not a task id"),
    Case("path task id %0A", request("DELETE", "/v1/tasks/a%0Ab"), 400, "is not a task id"),
    Case("path task id of 5000 chars", request("GET", "/v1/tasks/" + "A" * 5000), 400,
         "is not a task id"),
    Case("well-formed unknown id", request("GET", "/v1/tasks/00000000000000000000"), 404,
         "no task with id"),
    Case("filter queue=*", request("GET", "/v1/tasks?queue=*"), 400, "queue: '*' is not a valid queue name"),
    Case("filter name=a{b}", request("GET", "/v1/tasks?name=" + urllib.parse.quote("a{b}")), 400,
         "is not a valid task name"),
    Case("filter state=bogus", request("GET", "/v1/tasks?state=bogus"), 400, "state: must be one of"),
    Case("limit=-1", request("GET", "/v1/tasks?limit=-1"), 400, "limit: must be between 1 and 1000"),
    Case("limit=1e9", request("GET", "/v1/tasks?limit=1e9"), 400, "limit: expected an integer"),
    Case("cursor junk", request("GET", "/v1/tasks?cursor=%7B%7D"), 400, "cursor: not a cursor"),
    Case("wait=nan", request("GET", "/v1/tasks/00000000000000000000?wait=nan"), 400,
         "wait: must be between 0 and 60"),
    Case("wait=-1", request("GET", "/v1/tasks/00000000000000000000?wait=-1"), 400, "wait: must be between"),
    # times
    Case("delay -1", enqueue(task(delay=-1)), 400, "delay: expected `float` >= 0.0"),
    Case("delay 1e20", enqueue(task(delay=1e20)), 400, "delay: expected `float` <= 315360000.0"),
    Case("timeout 0", enqueue(task(timeout=0)), 400, "timeout: expected `float` > 0.0"),
    Case("timeout -5", enqueue(task(timeout=-5)), 400, "timeout: expected `float` > 0.0"),
    Case("timeout 1e300", enqueue(task(timeout=1e300)), 400, "timeout: expected `float` <= 315360000.0"),
    Case("max_attempts 0", enqueue(task(max_attempts=0)), 400, "max_attempts: expected `int` >= 1"),
    Case("max_attempts 10^6", enqueue(task(max_attempts=10**6)), 400, "max_attempts: expected `int` <= 1000"),
    Case("run_at year 9999", enqueue(task(run_at="9999-12-31T23:59:59Z")), 400,
         "run_at: at most 10 years ahead"),
    Case("run_at without zone", enqueue(task(run_at="2030-01-01T00:00:00")), 400,
         "run_at: expected `datetime` with a timezone"),
    Case("run_at not a date", enqueue(task(run_at="tomorrow")), 400, "run_at: invalid RFC3339"),
    Case("delay and run_at", enqueue(task(delay=1, run_at="2030-01-01T00:00:00Z")), 400,
         "give one or the other"),
    # sizes
    Case("body of 2 MB", enqueue(b'{"name":"tqd.noop","payload":"' + b"a" * 2_000_000 + b'"}'), 413,
         "body: 2000032 bytes is over the limit of 1048576 bytes"),
    Case("batch of 1001", request("POST", "/v1/tasks/batch",
                                  orjson.dumps({"tasks": [{"name": "tqd.noop"}] * 1001})), 400,
         "tasks: 1001 tasks is over the batch limit of 1000"),
    Case("empty batch", request("POST", "/v1/tasks/batch", b'{"tasks": []}'), 400,
         "tasks: at least one task is required"),
    Case("Idempotency-Key of 300 chars", enqueue(task(), headers="Idempotency-Key: " + "k" * 300 + "\r\n"),
         400, "Idempotency-Key: 1 to 255 visible"),
    Case("header of 20 kB", request("GET", "/v1/queues", headers="X-Big: " + "a" * 20_000 + "\r\n"), 400,
         "Got more than 8190 bytes"),
    Case("200 headers", request("GET", "/v1/queues", headers="".join(f"X-H{i}: v\r\n" for i in range(200))),
         400, "Too many headers"),
    Case("URL of 20 kB", request("GET", "/v1/tasks?" + "a" * 20_000), 400, "Got more than 8190 bytes"),
    # the pull API of remote workers (queue "gpu" holds remote tasks)
    Case("lease max 0", request("POST", "/v1/queues/gpu/lease", b'{"max": 0}'), 400,
         "max: expected `int` >= 1"),
    Case("lease max 10^6", request("POST", "/v1/queues/gpu/lease", b'{"max": 1000000}'), 400,
         "max: expected `int` <= 1000"),
    Case("lease wait 1e9", request("POST", "/v1/queues/gpu/lease", b'{"wait": 1e9}'), 400,
         "wait: expected `float` <= 315360000.0"),
    Case("lease visibility -1", request("POST", "/v1/queues/gpu/lease",
                                        b'{"visibility_timeout": -1}'), 400,
         "visibility_timeout: expected `float` > 0.0"),
    Case("lease worker with newline", request("POST", "/v1/queues/gpu/lease",
                                              b'{"worker": "a\\nb"}'), 400, "worker: expected `str` matching"),
    Case("lease of a local queue", request("POST", "/v1/queues/default/lease", b"{}"), 404,
         "no remote queue named 'default'"),
    Case("heartbeat token of 500 chars", request("POST", "/v1/tasks/00000000000000000000/heartbeat",
                                                 orjson.dumps({"token": "t" * 500})), 400,
         "token: expected `str` of length <= 200"),
    Case("complete without token", request("POST", "/v1/tasks/00000000000000000000/complete", b"{}"),
         400, "token: required field missing"),
    Case("fail with delay -1", request("POST", "/v1/tasks/00000000000000000000/fail",
                                       b'{"token": "x", "delay": -1}'), 400, "delay: expected `float` >= 0.0"),
    Case("settle ids with {, } and ../", request("POST", "/v1/tasks/settle", orjson.dumps(
        {"outcomes": [{"id": i, "token": "x", "outcome": "complete"}
                      for i in ("a}{b", "../x", "*", "a\nb")]})), 200, '"ok":false'),
    Case("settle of 1001 outcomes", request("POST", "/v1/tasks/settle", orjson.dumps(
        {"outcomes": [{"id": "x", "token": "x", "outcome": "release"}] * 1001})), 400,
         "outcomes: 1001 is over the batch limit of 1000"),
    Case("settle result nested 300 deep", request("POST", "/v1/tasks/settle",
         b'{"outcomes": [{"id": "x", "token": "x", "outcome": "complete", "result": '
         + b"[" * 300 + b"]" * 300 + b"}]}"), 400, "nested"),
    # protocol
    Case("garbage request line", b"HELLO WORLD\r\n\r\n", 400, "Invalid method"),
    Case("method FOO", request("FOO", "/v1/tasks"), 400, "Invalid method"),
    Case("method PUT on /v1/tasks", request("PUT", "/v1/tasks", b"{}"), 405, "Method Not Allowed"),
    Case("purge state processing", request("POST", "/v1/queues/default/purge", b'{"state": "processing"}'),
         400, "state: must be one of pending, scheduled, completed, failed, cancelled"),
]


def send(host: str, port: int, data: bytes, timeout: float = 15.0) -> Answer:
    """Send ``data``, read the whole answer (the server closes), parse it."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace").strip()  # not an error: the body itself
    return Answer(status, message)


def markdown(results: list[tuple[Case, Answer]]) -> str:
    """The table for docs/RELIABILITY.md."""
    lines = ["| input | status | message |", "| --- | --- | --- |"]
    for case, answer in results:
        message = " ".join(answer.message.split())
        message = message if len(message) <= 110 else message[:107] + "..."
        message = message.replace("|", "\\|")
        lines.append(f"| {case.label} | {answer.status} | {message} |")
    return "\n".join(lines)


def main(url: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    results = [(c, send(parsed.hostname or "127.0.0.1", parsed.port or 80, c.data)) for c in CASES]
    print(markdown(results))


if __name__ == "__main__":
    main(sys.argv[1])
