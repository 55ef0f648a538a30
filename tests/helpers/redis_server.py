"""A private redis-server for tests: never the machine's shared one.

``redis_server`` (session scope) starts ``redis-server`` on a free port in a
temporary directory, without persistence, waits for PING with a deadline and
kills it at the end. ``redis_prefix`` gives each test its own key prefix, so
tests share the server without seeing each other's keys (nothing is
flushed). Other conftest files reuse them with::

    from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

START_DEADLINE = 10.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One redis-server process; can be stopped and started again on its port."""

    def __init__(
        self, directory: Path, port: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        #: More redis-server arguments, such as ("--cluster-enabled", "yes").
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it answers PING (or fail)."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        log = open(self.directory / "redis.log", "ab")  # the process keeps its own copy
        # no persistence, loopback only, and never evicting (tests count keys)
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        args += ["no", "--dir", str(self.directory), "--maxmemory-policy", "noeviction"]
        self.proc = subprocess.Popen(
            [binary, *args, *self.extra],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_DEADLINE
        while not _answers_ping(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {START_DEADLINE}s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill the server and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        """Kill and start again on the same port (all data is lost)."""
        self.stop()
        self.start()


def start_server(directory: Path, extra: tuple[str, ...] = ()) -> RedisServer:
    """A started RedisServer on a free port (tries another port if one was taken)."""
    server = RedisServer(directory, extra=extra)
    for attempt in range(3):  # the free port may be taken before the server binds it
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == 2:
                raise
            server.port = free_port()
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test session (see the module docstring)."""
    server = start_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses."""
    return f"tqdtest-{os.getpid()}-{uuid.uuid4().hex[:10]}"
