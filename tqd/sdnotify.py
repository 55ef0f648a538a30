"""systemd's notify protocol (sd_notify) without a dependency.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``: a Unix datagram
socket (a path, or an abstract name written with a leading ``@``). Each
datagram holds newline-separated ``KEY=VALUE`` lines: ``READY=1`` once the
service works, ``STOPPING=1`` when it begins to stop, ``RELOADING=1`` /
``READY=1`` around a reload, ``WATCHDOG=1`` as a keep-alive when
``$WATCHDOG_USEC`` asks for one, and ``STATUS=…`` as a line shown by
``systemctl status``.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing. A failed
send is logged once and never raised: a service must not die because its
supervisor went away.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger("tqd.sdnotify")


def _address(value: str) -> str | None:
    """The socket address of ``$NOTIFY_SOCKET``: a path, or ``\\0name`` for ``@name``."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock and relative paths are not supported


class Notifier:
    """Sends notify messages to the socket ``$NOTIFY_SOCKET`` names."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._failed = False
        self.watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines (keys upper-cased); True if sent."""
        if self._address is None:
            return False
        text = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(text.encode(), self._address)
        except OSError as err:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self._address.lstrip("\0"), err)
                self._failed = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (with a STATUS line)."""
        return self.send(ready=1, **({"status": status} if status else {}))

    def reloading(self) -> bool:
        """RELOADING=1 with the monotonic time systemd asks for (READY=1 ends it)."""
        return self.send(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1 (with a STATUS line)."""
        return self.send(stopping=1, **({"status": status} if status else {}))

    def status(self, text: str) -> bool:
        """STATUS=text, shown by ``systemctl status``."""
        return self.send(status=text.replace("\n", " "))

    def watchdog(self) -> bool:
        """WATCHDOG=1: this process is alive."""
        return self.send(watchdog=1)

    def watchdog_interval(self) -> float | None:
        """Seconds between keep-alives (half of WATCHDOG_USEC), or None when not asked."""
        if self._address is None or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2e6

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(env: Mapping[str, str]) -> int:
    """WATCHDOG_USEC when it is meant for this process, else 0.

    systemd sets WATCHDOG_PID to the main process. The one-file executable
    runs tqd in a child of a small bootloader (the main process), so the
    bootloader's pid — our parent's — counts as ours too.
    """
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0
    pid = env.get("WATCHDOG_PID")
    if pid and pid not in (str(os.getpid()), str(os.getppid())):
        return 0
    return max(usec, 0)


#: Seconds between STATUS refreshes while running.
STATUS_INTERVAL = 5.0
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def forget_environment() -> None:
    """Remove the notify variables from this process's environment, so the
    commands it runs (exec handlers) cannot speak for it to systemd."""
    for name in NOTIFY_VARIABLES:
        os.environ.pop(name, None)


async def keep_alive(
    notifier: Notifier,
    status: Callable[[], Awaitable[str]],
    status_interval: float = STATUS_INTERVAL,
) -> None:
    """Until cancelled: WATCHDOG=1 every half WATCHDOG_USEC, and a fresh STATUS
    line every ``status_interval`` seconds.

    The two run apart, so a slow store (status waits for it) never delays a
    keep-alive: the watchdog tells systemd the event loop runs, nothing more.
    """
    if not notifier.enabled:
        return
    jobs = [asyncio.create_task(_refresh_status(notifier, status, status_interval))]
    interval = notifier.watchdog_interval()
    if interval:
        jobs.append(asyncio.create_task(_watchdog(notifier, interval)))
    try:
        await asyncio.gather(*jobs)
    finally:
        for job in jobs:
            job.cancel()


async def _watchdog(notifier: Notifier, interval: float) -> None:
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


async def _refresh_status(
    notifier: Notifier, status: Callable[[], Awaitable[str]], interval: float
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            text = await asyncio.wait_for(status(), timeout=interval)
        except TimeoutError:
            text = f"the store did not answer within {interval:g}s"
        except Exception as err:
            text = f"status unavailable: {type(err).__name__}: {err}"
        notifier.status(text)
