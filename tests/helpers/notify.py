"""A stand-in for systemd's notify socket: collects what tqd sends over sd_notify.

``NotifySocket`` binds a Unix datagram socket (an abstract name, as systemd
may pass with ``@``, or a path) and records every datagram as a dict of its
``KEY=VALUE`` lines, in arrival order. Pass ``.env()`` to the process.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.helpers.daemon import Daemon, wait_until


class NotifySocket:
    """Receives sd_notify datagrams on a background thread."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            self.name = f"@tqd-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.sock.bind("\0" + self.name[1:])
        else:
            self.name = str(path)
            self.sock.bind(self.name)
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def env(self, watchdog_usec: int | None = None, watchdog_pid: int | None = None) -> dict[str, str]:
        """Variables that point a process at this socket (and ask for a watchdog)."""
        env = {"NOTIFY_SOCKET": self.name}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        if watchdog_pid is not None:
            env["WATCHDOG_PID"] = str(watchdog_pid)
        return env

    def wait_for(self, condition: Callable[[dict[str, str]], bool], timeout: float = 15.0,
                 message: str = "notify message") -> dict[str, str]:
        """The first message (in arrival order) that satisfies ``condition``."""
        return wait_until(lambda: next((m for m in list(self.messages) if condition(m)), None),
                          timeout=timeout, message=message)

    def index(self, condition: Callable[[dict[str, str]], bool], start: int = 0) -> int:
        """Position of the first message from ``start`` that satisfies ``condition``, or -1."""
        for i, m in enumerate(list(self.messages)[start:], start):
            if condition(m):
                return i
        return -1

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()
        if not self.name.startswith("@"):
            Path(self.name).unlink(missing_ok=True)


def run_notify_sequence(daemon: Daemon, notify: NotifySocket, completed_before: int = 0) -> None:
    """Drive a started daemon on a fresh store (``completed_before`` tasks
    completed since it started) through a task, SIGHUP and SIGTERM; check what it
    told ``notify``: READY=1 first (with its URL), WATCHDOG=1, RELOADING=1 then
    READY=1 with the new totals, STOPPING=1 last, and exit status 0."""
    ready = notify.wait_for(lambda m: m.get("READY") == "1", message="READY=1")
    assert "listening on " + daemon.url in ready["STATUS"]
    assert "0 completed," in ready["STATUS"], ready  # a fresh store
    status, task = daemon.call("POST", "/v1/tasks", {"name": "tqd.echo", "payload": 1})
    assert status == 201
    _, task = daemon.call("GET", f"/v1/tasks/{task['id']}?wait=20")
    assert task["state"] == "completed"
    notify.wait_for(lambda m: m.get("WATCHDOG") == "1", message="WATCHDOG=1")
    daemon.signal(signal.SIGHUP)
    reloading = notify.wait_for(lambda m: m.get("RELOADING") == "1", message="RELOADING=1")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    done = completed_before + 1
    notify.wait_for(lambda m: m.get("READY") == "1" and f"{done} completed" in m.get("STATUS", ""),
                    message=f"READY=1 after the reload, with {done} completed")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    notify.wait_for(lambda m: m.get("STOPPING") == "1", message="STOPPING=1")

    seq = list(notify.messages)
    assert notify.index(lambda m: m.get("READY") == "1") == 0, f"READY=1 must come first: {seq}"
    stop_at = notify.index(lambda m: m.get("STOPPING") == "1")
    assert seq[stop_at]["STATUS"].startswith("draining"), seq[stop_at]
    first_watchdog = notify.index(lambda m: "WATCHDOG" in m)
    reload_at = notify.index(lambda m: "RELOADING" in m)
    ready_again = notify.index(lambda m: m.get("READY") == "1", reload_at)
    assert 0 < first_watchdog < stop_at, seq
    assert 0 < reload_at < ready_again < stop_at, seq
    assert notify.index(lambda m: "READY" in m or "RELOADING" in m, stop_at) == -1, seq
