"""sd_notify: the protocol module alone, and a real ``tqd serve`` talking to a
socket that stands in for systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import textwrap
from pathlib import Path

import pytest

from tests.helpers.daemon import Daemon
from tests.helpers.notify import NotifySocket, run_notify_sequence
from tqd.sdnotify import Notifier, keep_alive


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def test_sends_to_an_abstract_socket(notify_socket: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.name})
    assert notify_socket.name.startswith("@")
    assert notifier.enabled
    assert notifier.ready("up")
    message = notify_socket.wait_for(lambda m: "READY" in m)
    assert message == {"READY": "1", "STATUS": "up"}


def test_sends_to_a_socket_path(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify")
    try:
        notifier = Notifier({"NOTIFY_SOCKET": sock.name})
        notifier.status("line one\nline two")
        assert sock.wait_for(lambda m: "STATUS" in m) == {"STATUS": "line one line two"}
    finally:
        sock.close()


def test_does_nothing_without_a_socket() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval() is None


def test_a_missing_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="tqd.sdnotify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        # the one-file executable: systemd's main pid is the bootloader, our parent
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getppid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "garbage"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], interval: float | None) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "@x", **env})
    assert notifier.watchdog_interval() == interval


async def test_keep_alive_pings_and_refreshes_status(notify_socket: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "100000"})
    rounds = iter(range(1000))

    async def status() -> str:
        return f"round {next(rounds)}"

    job = asyncio.create_task(keep_alive(notifier, status, status_interval=0.05))
    try:
        for _ in range(200):  # wait on the event loop, with a deadline
            if (sum("WATCHDOG" in m for m in notify_socket.messages) >= 3
                    and any(m.get("STATUS") == "round 2" for m in notify_socket.messages)):
                break
            await asyncio.sleep(0.05)
    finally:
        job.cancel()
    statuses = [m["STATUS"] for m in notify_socket.messages if "STATUS" in m]
    assert statuses[:3] == ["round 0", "round 1", "round 2"]
    assert sum("WATCHDOG" in m for m in notify_socket.messages) >= 3


async def test_a_slow_status_never_delays_the_watchdog(notify_socket: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "100000"})

    async def stuck() -> str:
        await asyncio.sleep(3600)
        return "never"

    job = asyncio.create_task(keep_alive(notifier, stuck, status_interval=0.2))
    try:
        for _ in range(200):
            if any("STATUS" in m for m in notify_socket.messages):
                break
            await asyncio.sleep(0.02)
    finally:
        job.cancel()
    assert any(m.get("STATUS", "").startswith("the store did not answer") for m in notify_socket.messages)
    assert sum("WATCHDOG" in m for m in notify_socket.messages) >= 3


HANDLERS = '''
import os

def notify_env(payload, ctx):
    return [os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")]
'''


def test_serve_reports_its_life_to_systemd(tmp_path: Path, notify_socket: NotifySocket) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    config = tmp_path / "tqd.toml"
    config.write_text(textwrap.dedent(f"""
        python_path = ["{tmp_path}"]
        [tasks.notify_env]
        handler = "handlers:notify_env"
    """))
    daemon = Daemon(f"sqlite://{tmp_path}/tqd.db", config=config,
                    env=notify_socket.env(watchdog_usec=400_000))
    with daemon:
        # Commands and functions tqd runs cannot speak to systemd for it.
        status, task = daemon.call("POST", "/v1/tasks", {"name": "notify_env"})
        assert status == 201
        _, task = daemon.call("GET", f"/v1/tasks/{task['id']}?wait=20")
        assert task["state"] == "completed"
        assert task["result"] == [None, None, None]
        run_notify_sequence(daemon, notify_socket, completed_before=1)
