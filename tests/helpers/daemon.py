"""Run ``tqd serve`` as a real subprocess in tests.

``Daemon`` starts ``python -m tqd serve`` from this checkout (PYTHONPATH set,
so the code under test is what runs), reads the URL it prints with a
deadline, and can stop it with any signal. ``wait_until`` polls a condition
with a deadline instead of sleeping and hoping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Return the first truthy value of ``condition()``; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout}s")
        time.sleep(interval)


def tqd_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment that runs this checkout's tqd."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQD_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Daemon:
    """A ``tqd serve`` subprocess."""

    def __init__(self, storage: str, *, config: Path | None = None, args: Sequence[str] = (),
                 env: dict[str, str] | None = None, listen: str = "127.0.0.1:0",
                 command: Sequence[str] | None = None) -> None:
        self.storage = storage
        #: What runs tqd: this checkout's ``python -m tqd`` unless told (e.g. dist/tqd).
        self.command = list(command) if command else [sys.executable, "-m", "tqd"]
        self.config = config
        self.args = list(args)
        self.env = env
        self.listen = listen
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.stderr_lines: list[str] = []
        self._stderr_thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> Daemon:
        """Start and return once it prints the URL it listens on."""
        cmd = [*self.command, "serve", "--listen", self.listen, "--storage", self.storage]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        cmd += self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=tqd_env(self.env), cwd=ROOT)
        self.stderr_lines = []
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        line = self._read_line(timeout)
        if "listening on" not in line:
            self.kill()
            raise AssertionError(f"tqd did not start: {line!r}; stderr: {self.stderr}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return box[0] if box else ""

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit, return the status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    # -- HTTP helpers -------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             timeout: float = 30.0) -> tuple[int, Any]:
        """One request; returns (status, decoded JSON body or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None

    def __enter__(self) -> Daemon:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
