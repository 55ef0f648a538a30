"""The limit on open HTTP connections (``[api] max_connections``).

What it promises:

- At most ``limit`` client connections are served at once: plain HTTP,
  keep-alive and WebSocket (``/v1/events``) alike, since each holds a file
  descriptor and a request handler whatever it does.
- A connection that arrives while the limit is reached is turned away before
  aiohttp sees it: once its request starts to arrive it is answered
  ``503 {"error": {"code": "too_many_connections", ...}}`` with
  ``Connection: close`` and ``Retry-After: 1``, then closed. Under a
  flood, answering must not itself hold the descriptors the limit protects:
  a refused client that sends nothing within ``refusal_timeout`` seconds is
  closed without an answer, and one that arrives while ``max_refusing``
  refusals are still being answered is closed at once.
- Connections already served are never cut; the count drops as each one
  closes, and the next connection is served again.
- Refusals are logged through a :class:`~tqd.logs.Throttle` (one line as
  they begin, then one a minute with their number), never a line per
  connection; ``/metrics`` shows the count, the limit and the refusals.
- ``/healthz`` and ``/readyz`` are not exempt. Exempting them would mean
  taking every connection over the limit and reading its request to see
  where it goes: the very cost the limit exists to refuse. And a probe that
  cannot get through tells the truth: this process takes no more clients
  now (a readiness probe then sends traffic elsewhere; a liveness probe
  should allow a few failures before it restarts anything).

How: aiohttp's ``web.Server`` is the protocol factory of the listening
socket and hears ``connection_made``/``connection_lost`` from each of its
request handlers. :class:`ConnectionLimit` counts those two calls (exact,
whatever the handler does meanwhile, WebSocket included) and puts its own
factory in front of the server's: under the limit it makes aiohttp's
handler, over it a small :class:`_Refusal` protocol. :class:`LimitedSite`
is aiohttp's ``TCPSite`` listening through that factory. Nothing runs per
request, only per connection.

With ``[tls]`` a connection counts once its TLS handshake is done (before
that asyncio gives the protocol nothing); a handshake is limited to 60 s
by asyncio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, cast

import orjson
from aiohttp import web

from tqd.config import Config
from tqd.errors import TqdError
from tqd.logs import Throttle

log = logging.getLogger("tqd.api.connections")

try:
    import resource
except ImportError:  # pragma: no cover - Windows has no rlimits
    resource = None  # type: ignore[assignment]

#: Descriptors kept for the process itself, whatever its configuration:
#: stdio, the event loop, the listening sockets, the SQLite writer and reader
#: (database, WAL and shared-memory files each), the sd_notify socket, static
#: files being sent, a margin.
BASE_RESERVE = 64
#: Descriptors one busy worker slot may hold: an exec task's stdin, stdout and
#: stderr pipes and its process handle (an http task holds one socket, and
#: the http client keeps about as many idle for reuse; a python task none).
#: Counted for every slot, so a full pool of exec tasks never competes with
#: clients for descriptors.
PER_WORKER_SLOT = 4
#: Descriptors of a Redis store: its connection pool may grow to this.
REDIS_RESERVE = 256


class TooManyConnections(TqdError):
    """The process serves as many connections as ``[api] max_connections`` allows."""

    code = "too_many_connections"
    status = 503


def reserved_descriptors(config: Config) -> int:
    """Descriptors kept for everything but client connections (see the constants)."""
    reserve = BASE_RESERVE + ConnectionLimit.max_refusing
    if config.worker.enabled:
        reserve += PER_WORKER_SLOT * config.worker.concurrency
    if not config.storage_url.startswith("sqlite://"):
        reserve += REDIS_RESERVE
    return reserve


def effective_limit(config: Config) -> tuple[int, str | None]:
    """``[api] max_connections``, cut to what the open-file limit allows; and
    why it was cut (None: it was not).

    The soft ``RLIMIT_NOFILE`` less :func:`reserved_descriptors`, so a full
    house of clients leaves the store, the logs and the commands of exec
    tasks their descriptors: running out of them fails far from its cause
    (a SQLite "unable to open database file", an accept loop spinning on
    EMFILE, a WebSocket dropped). When the reserve itself eats most of a low
    limit (say macOS's 256), a quarter of the limit still goes to clients:
    the reserve counts worst cases. tqd does not raise its own soft limit:
    the commands of exec tasks would inherit it, and some programs break
    with descriptors above 1024 (select()); raise it where tqd is started
    (``LimitNOFILE=`` in the systemd unit, ``ulimit -n``).
    """
    wanted = config.api.max_connections
    if resource is None:
        return wanted, None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted, None
    reserve = reserved_descriptors(config)
    cap = max(soft - reserve, soft // 4, 1)
    if wanted <= cap:
        return wanted, None
    return cap, (
        f"[api] max_connections = {wanted} is more than the open-file limit allows: "
        f"{soft} files, {reserve} of them kept for the store, logs and worker slots; "
        f"serving at most {cap} connections (raise LimitNOFILE or ulimit -n)"
    )


class ConnectionLimit:
    """Counts the open connections of one aiohttp server and turns away those
    over ``limit`` (see the module docstring for what it promises).

    Call it from the event loop only.
    """

    #: Refused connections being answered at once; more are closed at once.
    max_refusing = 64
    #: Seconds a refused connection has to send its request and read the answer.
    refusal_timeout = 2.0

    def __init__(self, limit: int, logger: logging.Logger = log) -> None:
        self.limit = limit
        #: Connections served now (from connection_made to connection_lost).
        self.open = 0
        #: Connections turned away since start.
        self.refused = 0
        #: Refused connections still open (being answered).
        self.refusing = 0
        self._arriving = 0
        self._server: web.Server | None = None
        self._factory: Callable[[], asyncio.BaseProtocol] | None = None
        self._log = Throttle(logger)

    def factory(self, server: web.Server) -> Callable[[], asyncio.BaseProtocol]:
        """The protocol factory to listen with: ``server``'s, behind the limit.

        Hooks ``server``'s ``connection_made``/``connection_lost`` (which each
        of its request handlers calls once) to keep :attr:`open`. One server
        per limit; asking again for it returns the same factory.
        """
        if self._factory is not None:
            if server is not self._server:
                raise RuntimeError("a ConnectionLimit counts the connections of one server")
            return self._factory
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            self.open += 1
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self.open -= 1
            lost(handler, exc)

        # On the instance: web.Server offers no other hook, and a subclass
        # would need aiohttp's private way of building the app's server.
        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()

        def arrived() -> None:
            self._arriving = 0

        def protocol() -> asyncio.BaseProtocol:
            # A burst of accepts makes its protocols before the loop calls
            # their connection_made, so those are counted as arriving until
            # then. arrived() was scheduled before those calls (by the first
            # accept of the burst) and runs just before them, in a turn of
            # the loop where nothing is accepted.
            if self.open + self._arriving < self.limit:
                self._arriving += 1
                if self._arriving == 1:
                    loop.call_soon(arrived)
                return server()
            self.refused += 1
            return _Refusal(self)

        self._server, self._factory = server, protocol
        return protocol

    def refusing_one(self, peer: str) -> bool:
        """Note a refused connection from ``peer`` (logged, throttled); False
        when it must be closed at once (too many being answered)."""
        self._log.log("turned away a connection from %s: %d connections are open, the limit "
                      "([api] max_connections)", peer, self.limit)
        if self.refusing >= self.max_refusing:
            return False
        self.refusing += 1
        return True

    def close(self) -> None:
        """Log the refusals not yet summed up (at shutdown)."""
        self._log.close()


_REFUSAL_BODY = orjson.dumps(TooManyConnections(
    "too many connections: this tqd serves as many as [api] max_connections allows; "
    "try again in a moment"
).to_json())


def refusal_response() -> bytes:
    """The whole HTTP response a refused connection gets."""
    body = _REFUSAL_BODY
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Retry-After: 1\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "\r\n"
    )
    return head.encode() + body


class _Refusal(asyncio.Protocol):
    """A connection over the limit: answered 503 once its request starts to
    arrive, then closed.

    The answer waits for the request because some clients (Go's) drop a
    response that comes before they sent anything. After it, the write side
    is shut and what the client still sends is read and dropped until it
    closes: closing with unread bytes would reset the connection, and the
    client might lose the answer. ``refusal_timeout`` bounds all of it.
    """

    def __init__(self, limit: ConnectionLimit) -> None:
        self._limit = limit
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False
        self._answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # (uvloop's are not subclasses)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        shown = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
        if not self._limit.refusing_one(shown):
            self._answered = True
            transport.abort()
            return
        self._counted = True
        self._timer = asyncio.get_running_loop().call_later(
            self._limit.refusal_timeout, transport.abort
        )

    def data_received(self, data: bytes) -> None:
        if self._answered or self._transport is None:
            return  # the rest of the request: dropped
        self._answered = True
        self._transport.write(refusal_response())
        if self._transport.can_write_eof():
            self._transport.write_eof()
        else:  # TLS: close() sends the answer, then close_notify
            self._transport.close()

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._counted:
            self._counted = False
            self._limit.refusing -= 1
        self._transport = None


class LimitedSite(web.TCPSite):
    """aiohttp's ``TCPSite``, listening through a :class:`ConnectionLimit`.

    ``TCPSite.start`` hands the runner's server itself to the event loop;
    this ``start`` does the same with the limit's factory in front of it.
    """

    def __init__(self, runner: web.BaseRunner, limit: ConnectionLimit, host: str, port: int,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.limit = limit

    async def start(self) -> None:
        """Listen; every connection passes the limit first."""
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.limit.factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
