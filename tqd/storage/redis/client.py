"""The connection to Redis and the running of tqd's scripts over it.

``connect`` builds a redis.asyncio client that fails fast: socket and
connect timeouts are set, and a command is retried once (after a short,
jittered pause) only on a ConnectionError, which is what a pooled connection
that the server closed (after a restart) raises; never after a timeout, so a
stopped server costs one timeout, not several. ``Breaker`` makes every
later call fail at once while the server is known to be down (so an enqueue
answers 503 at once rather than waiting out a timeout of its own) and probes
it with capped backoff until it answers. ``ScriptClient`` sends scripts by
SHA, loads them again after a NOSCRIPT (a restarted or flushed server) and
turns Redis failures into tqd errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

try:  # the C packer of hiredis (installed with tqd); redis-py's own otherwise
    from hiredis import pack_command
except ImportError:  # pragma: no cover
    pack_command = None
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    ConnectionError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from tqd.errors import Conflict, LimitsChanged, NotFound, StorageUnavailable
from tqd.models import STATES
from tqd.storage.redis import scripts

log = logging.getLogger("tqd.storage.redis")

DOWN = (ConnectionError, TimeoutError, OSError)

#: Most connections one client opens. Beyond it a command waits for a free
#: connection (up to the socket timeout) instead of failing: redis-py 8's
#: default pool holds 100 and raises "Too many connections" at once, which a
#: process leasing from a hundred queues at a time reaches.
MAX_CONNECTIONS = 256


def connect(
    url: str,
    *,
    connect_timeout: float,
    socket_timeout: float | None,
    ssl: dict[str, str],
    subscriber: bool = False,
) -> Redis:
    """A client for ``url`` (redis://, rediss://, unix://); connects lazily.

    A ``subscriber`` client never retries by itself: redis-py would
    reconnect and resubscribe silently, hiding the gap in which messages
    were lost; the Subscriber reconnects and resyncs instead.
    """
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "retry": Retry(
            ExponentialWithJitterBackoff(base=0.01, cap=0.2),
            0 if subscriber else 1,
            (ConnectionError,),
        ),
        # the subscriber's long reads check the connection every so often
        "health_check_interval": 15 if subscriber else 0,
    }
    if not url.startswith("unix://"):
        kwargs["socket_keepalive"] = True
        if hasattr(socket, "TCP_KEEPIDLE"):
            # A peer that vanished without closing (a network partition, a
            # powered-off host) is noticed within about 25 s instead of the
            # kernel's default 2 hours; the subscriber's blocking read relies
            # on it.
            kwargs["socket_keepalive_options"] = {
                socket.TCP_KEEPIDLE: 10, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3,
            }
    if url.startswith("rediss://"):
        kwargs.update(ssl)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=socket_timeout or connect_timeout, **kwargs
    )
    client = Redis.from_pool(pool)  # the client owns the pool: closing it closes the pool
    if pack_command is not None:
        # Connections are made lazily, so none exists yet with the old class.
        pool.connection_class = _fast_packing(pool.connection_class)
    return client


_FAST: dict[type, type] = {}


def _fast_packing(base: type) -> type:
    """``base`` (a redis.asyncio connection class) packing commands with
    hiredis's C packer: redis-py's asyncio connections pack in pure Python,
    which costs more than the rest of an enqueue's round trip (tqd sends
    scripts with dozens of arguments)."""
    if base not in _FAST:

        class FastPacking(base):  # type: ignore[valid-type, misc]
            def pack_command(self, *args: Any) -> list[bytes]:
                first = args[0]
                if (isinstance(first, str) and " " in first) or (isinstance(first, bytes) and b" " in first):
                    return super().pack_command(*args)  # "CONFIG GET": split by redis-py
                return [pack_command(args)]

        FastPacking.__name__ = f"FastPacking{base.__name__}"
        _FAST[base] = FastPacking
    return _FAST[base]


class StateConflict(Exception):
    """A script refused a task in this state (the caller words the Conflict)."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


def translate(err: ResponseError) -> Exception:
    """A tqd error for a script's error reply or a server refusal."""
    text = str(err)
    if "TQD_NOT_FOUND" in text:
        return NotFound("no such task")
    if "TQD_CONFLICT" in text:
        state = text.split("TQD_CONFLICT", 1)[1].split()[0]
        return StateConflict(state if state in STATES else "in another state")
    if "TQD_LIMITS_CHANGED" in text:
        return LimitsChanged("the queue's limits changed meanwhile")
    if "TQD_DUPLICATE_ID" in text:
        return Conflict("a task with this id already exists; enqueue again")
    if isinstance(err, ReadOnlyError) or text.startswith(("OOM", "LOADING", "MASTERDOWN", "BUSY")):
        return StorageUnavailable(f"storage: Redis refused the write: {text}")
    return err


async def guarded(awaitable: Any) -> Any:
    """Await a Redis call, translating failures into tqd errors."""
    try:
        return await awaitable
    except DOWN as err:
        raise StorageUnavailable(f"storage: Redis is unavailable: {err}") from None
    except ResponseError as err:
        raise translate(err) from None


class Breaker:
    """Fails calls at once while Redis is known to be unreachable.

    The first call that finds Redis down (connection refused or reset, a
    timeout) opens the breaker. While it is open every call raises
    StorageUnavailable at once instead of waiting out a timeout of its own,
    and one background probe PINGs with capped, jittered exponential backoff;
    the first answer closes the breaker. So during an outage the API answers
    503 at once and /readyz says why, and the process is using Redis again
    within about ``cap`` seconds of it coming back.
    """

    FIRST = 0.05
    CAP = 1.0

    def __init__(self, ping: Callable[[], Awaitable[Any]], probe_timeout: float) -> None:
        self._ping = ping
        self._probe_timeout = probe_timeout
        self._probe: asyncio.Task | None = None
        self._since = 0.0
        #: Why Redis is taken as down, or None while it answers.
        self.reason: str | None = None
        #: How many outages were detected (for tests and logs).
        self.outages = 0

    def trip(self, reason: str) -> None:
        """Record that Redis did not answer; start probing unless already."""
        if self.reason is not None:
            return
        self.reason = reason
        self.outages += 1
        self._since = time.monotonic()
        log.warning("%s; failing fast until it answers again", reason)
        self._probe = asyncio.get_running_loop().create_task(self._run(), name="tqd-redis-probe")

    async def _run(self) -> None:
        delay = self.FIRST
        while True:
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            try:
                await asyncio.wait_for(self._ping(), self._probe_timeout)
            except Exception:  # any failure (refused, timed out, LOADING): not yet
                delay = min(delay * 2, self.CAP)
                continue
            log.info("storage: Redis answers again after %.1fs", time.monotonic() - self._since)
            self.reason = None
            self._probe = None
            return

    async def close(self) -> None:
        """Stop probing."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None

    async def call(self, awaitable: Any) -> Any:
        """Await a Redis call (a coroutine) unless the breaker is open,
        translating failures into tqd errors."""
        if self.reason is not None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise StorageUnavailable(self.reason)
        try:
            return await awaitable
        except DOWN as err:
            reason = f"storage: Redis is unavailable: {err}"
            self.trip(reason)
            raise StorageUnavailable(reason) from None
        except ResponseError as err:
            raise translate(err) from None


class ScriptClient:
    """Runs the scripts of scripts.py on one client, by SHA.

    With ``shebang`` (Redis 7 and later) each script starts with ``#!lua``,
    which makes Redis Cluster refuse any script that strays out of one hash
    slot (plain EVAL scripts are let through for compatibility).
    """

    def __init__(self, redis: Any, *, shebang: bool, breaker: Breaker) -> None:
        self.redis = redis
        self.breaker = breaker
        head = "#!lua\n" if shebang else ""
        self._sources = {name: head + body for name, body in scripts.ALL.items()}
        self._shas = {
            name: hashlib.sha1(src.encode()).hexdigest() for name, src in self._sources.items()
        }

    async def load(self) -> None:
        """Load every script into the server's script cache."""
        pipe = self.redis.pipeline(transaction=False)
        for src in self._sources.values():
            pipe.script_load(src)
        await self.breaker.call(pipe.execute())

    async def run(
        self,
        calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]],
        *,
        transaction: bool = False,
        before: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> list[Any]:
        """Run scripts ``(name, keys, args)`` in one round trip, in order.

        ``before`` holds plain commands ``(name, args)`` sent ahead of them
        (their replies are dropped). Raises the first failure, translated.
        """
        if len(calls) == 1 and not before and not transaction:
            return [await self._run_one(*calls[0])]
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        first = True
        before_out: list[Any] = []
        while True:
            pipe = self.redis.pipeline(transaction=transaction)
            extra = len(before) if first else 0
            if first:
                for command, args in before:
                    pipe.execute_command(command, *args)
            for i in todo:
                name, keys, args = calls[i]
                pipe.evalsha(self._shas[name], len(keys), *keys, *args)
            out = await self.breaker.call(pipe.execute(raise_on_error=False))
            if first:
                before_out = out[:extra]
            missing = []
            for i, res in zip(todo, out[extra:], strict=True):
                if first and isinstance(res, NoScriptError):
                    missing.append(i)
                else:
                    results[i] = res
            if not missing:
                break
            # The server lost its script cache; only the missing ones did not
            # run, so load and send just those again.
            await self.load()
            todo, first = missing, False
        for res in [*before_out, *results]:
            if isinstance(res, ResponseError):
                raise translate(res)
            if isinstance(res, Exception):
                raise StorageUnavailable(f"storage: Redis is unavailable: {res}")
        return results


    async def _run_one(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script as a plain command: a pipeline costs more than the call."""
        sha = self._shas[name]
        try:
            return await self.breaker.call(self.redis.evalsha(sha, len(keys), *keys, *args))
        except NoScriptError:
            # The server lost its script cache (a restart): load and send again.
            await self.load()
            return await self.breaker.call(self.redis.evalsha(sha, len(keys), *keys, *args))


