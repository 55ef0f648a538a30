"""A WebSocket client that does not read does not grow tqd's memory (measured).

A real ``tqd serve`` streams 120,000 task events (enqueue, then purge, in a
paused queue, so the database stays the same size) to a client whose socket
is never read. Buffered without bound, the frames alone would take about
20 MB. The test measures the daemon's resident memory (VmRSS) before and
after, and checks that the server dropped the messages (counted in one
"lagged" for when the client reads again) instead of keeping them.
"""

from __future__ import annotations

import base64
import os
import socket
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.daemon import Daemon

CYCLES = 60
BATCH = 1000
#: Allowed growth of the daemon's RSS while the client is stuck.
SLACK_MB = 10.0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def metric(tqd: Daemon, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(tqd.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no metric {name}")


def settled(tqd: Daemon, name: str, within: float = 15.0) -> float:
    """``name``'s value once it stops moving: tqd counts a dropped message
    when its sender gets to it, after the request that caused it answered.
    Two equal reads 0.5 s apart (nothing else runs) end the wait."""
    deadline = time.monotonic() + within
    value = metric(tqd, name)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = metric(tqd, name)
        if again == value:
            return value
        value = again
    raise AssertionError(f"{name} still moving after {within}s")


def churn(tqd: Daemon, cycles: int) -> None:
    """2 * BATCH task events per cycle, leaving the store as it was."""
    for _ in range(cycles):
        status, _ = tqd.call("POST", "/v1/tasks/batch",
                             {"tasks": [{"name": "tqd.noop", "queue": "held"}] * BATCH})
        assert status == 201
        status, body = tqd.call("POST", "/v1/queues/held/purge", {"state": "pending"})
        assert status == 200 and body["affected"] == BATCH


def stuck_client(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: leave every frame unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_client_that_never_reads_does_not_grow_memory(tmp_path):
    config = tmp_path / "tqd.toml"
    config.write_text("[events]\nstall_timeout = 3600.0\n")  # keep it connected throughout
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as tqd:
        assert tqd.call("POST", "/v1/queues/held/pause")[0] == 200
        churn(tqd, 20)  # warm up: caches, pages, allocator
        before = rss_mb(tqd.pid)
        sock = stuck_client(tqd.url)
        try:
            churn(tqd, CYCLES)
            after = rss_mb(tqd.pid)
            dropped = settled(tqd, "tqd_events_dropped_total")
            clients = metric(tqd, "tqd_events_clients")
        finally:
            sock.close()
    events = CYCLES * BATCH * 2
    print(f"\nslow WebSocket client: {events} events streamed, daemon RSS {before:.1f} MB -> "
          f"{after:.1f} MB ({after - before:+.1f} MB); {dropped:.0f} task messages dropped")
    assert clients == 1  # it stayed connected: the memory was not saved by closing it
    assert dropped > events * 0.9  # nearly all were dropped, not kept
    assert after - before < SLACK_MB
