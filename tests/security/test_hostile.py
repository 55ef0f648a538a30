"""Hostile input against a real ``tqd serve``: every case gets its 4xx with a
message, tqd keeps serving, and no traceback reaches the log. Slow clients
(slowloris) are cut off while others are served."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import Daemon, wait_until

from .hostile import CASES, markdown, send

#: A queue of remote tasks, for the pull API's cases.
REMOTE_TASK = '\n[tasks.render]\nhandler = { kind = "remote" }\nqueue = "gpu"\n'
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0


def _serve(folder: Path, storage: str, extra: str = "") -> Daemon:
    config = folder / "tqd.toml"
    config.write_text(f"[api]\nheader_timeout = {HEADER_TIMEOUT}\nbody_timeout = {BODY_TIMEOUT}\n"
                      + extra + REMOTE_TASK)
    return Daemon(storage, config=config)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("hostile")
    with _serve(folder, f"sqlite://{folder}/t.db") as d:
        yield d


@pytest.fixture(scope="module")
def redis_daemon(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Daemon]:
    """The same on Redis, where names and ids become parts of key names."""
    folder = tmp_path_factory.mktemp("hostile-redis")
    prefix = f"tqdhostile-{os.getpid()}"
    with _serve(folder, redis_server.url, f'\n[redis]\nprefix = "{prefix}"\n') as d:
        yield d


def port_of(d: Daemon) -> int:
    return int(d.url.rsplit(":", 1)[1])


def healthy(d: Daemon) -> bool:
    with urllib.request.urlopen(d.url + "/healthz", timeout=5) as resp:
        return resp.status == 200


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_every_hostile_input_gets_its_error(backend: str, request: pytest.FixtureRequest) -> None:
    daemon: Daemon = request.getfixturevalue("daemon" if backend == "sqlite" else "redis_daemon")
    results = []
    for case in CASES:
        answer = send("127.0.0.1", port_of(daemon), case.data)
        results.append((case, answer))
        assert answer.status == case.status, (case.label, answer)
        assert case.message in answer.message, (case.label, answer)
        assert 400 <= answer.status < 500 or '"ok":false' in answer.message
        assert healthy(daemon), case.label
    table = markdown(results)
    print(f"\n{len(results)} hostile inputs ({backend}):\n{table}")
    if os.environ.get("TQD_HOSTILE_TABLE") and backend == "sqlite":
        Path(os.environ["TQD_HOSTILE_TABLE"]).write_text(table + "\n")
    # nothing was stored by any of them
    status, body = daemon.call("GET", "/v1/tasks")
    assert status == 200 and body["tasks"] == []
    assert "Traceback" not in daemon.stderr
    assert "refused a malformed request (400)" in daemon.stderr  # one line each, at INFO


def _dribble(port: int, stop: threading.Event, box: dict) -> None:
    """Send a request head one byte at a time, never finishing it."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /v1/queues HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while not stop.is_set():
            try:
                s.sendall(b"a")
                s.settimeout(0.1)
                if s.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    box["closed_after"] = time.monotonic() - started


def test_slow_headers_are_cut_off_and_others_are_served(daemon: Daemon) -> None:
    port = port_of(daemon)
    stop = threading.Event()
    boxes: list[dict] = [{} for _ in range(20)]
    threads = [threading.Thread(target=_dribble, args=(port, stop, box), daemon=True) for box in boxes]
    for t in threads:
        t.start()
    try:
        # while twenty clients dribble, others are answered
        served = 0
        while any("closed_after" not in b for b in boxes) and served < 200:
            assert healthy(daemon)
            served += 1
        wait_until(lambda: all("closed_after" in b for b in boxes), timeout=HEADER_TIMEOUT + 20,
                   message="every slow client cut off")
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    worst = max(b["closed_after"] for b in boxes)
    print(f"\n20 slow-header clients cut off after at most {worst:.2f}s "
          f"(header_timeout {HEADER_TIMEOUT}s); {served} requests served meanwhile")
    assert served > 0
    assert all(b["closed_after"] >= HEADER_TIMEOUT * 0.9 for b in boxes)  # not before the limit
    assert healthy(daemon)


def test_slow_body_gets_408(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", port_of(daemon)), timeout=30) as s:
        s.sendall(b"POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"name\": ")
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"code":"request_timeout"' in answer
    assert b"body: not received within 1s ([api] body_timeout)" in answer
    assert healthy(daemon)


def test_chunked_body_over_the_limit_gets_413(daemon: Daemon) -> None:
    chunk = b"a" * 65536
    with socket.create_connection(("127.0.0.1", port_of(daemon)), timeout=30) as s:
        s.sendall(b"POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(40):  # 2.5 MB, never announced
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body: over the limit of 1048576 bytes" in answer
    assert healthy(daemon)
