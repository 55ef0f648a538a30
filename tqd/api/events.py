"""``GET /v1/events``: the live stream of task changes and queue counts (WebSocket).

Server → client text frames, one JSON object each:

* ``{"type": "hello", "queues": [..] | null}`` first (null: every queue);
* ``{"type": "task", "id", "queue", "name", "state", "at"}`` per task state
  change made by any process sharing the store (state "deleted" when gone);
* ``{"type": "queues", "queues": [...]}`` (every queue, as ``GET /v1/queues``,
  whatever the subscription) at most once per second, when the counts changed;
* ``{"type": "lagged", "dropped": n}`` when task messages were dropped
  because the client did not keep up (it should fetch the state again);
* ``{"type": "error", "error": {"code", "message"}}`` for a message from the
  client that is not understood.

Client → server: ``{"subscribe": ["a", "b"]}``, ``{"subscribe": []}`` (no task
messages) or ``{"subscribe": null}`` (every queue); it takes effect at once
and is not answered. The server speaks the sub-protocol ``tqd`` when the
client offers it (a browser that offers sub-protocols needs one chosen).

Cost and bounds. Changes go into one ring of the last RING changes, shared by
every client; a change costs the same whatever the number of clients, and
nothing is encoded unless a client sends it (then once for all clients).
Each client has a cursor into the ring and a writer that, at most once per
``events.interval``, sends the task messages since its cursor if there are
at most ``events.buffer`` of them; beyond that it sends none, only one
``lagged`` message with their number (the client refetches; under heavy
load a stream it cannot keep up with is of no use to it). So a client never
holds more than the ring's shared entries and its socket's buffers, however
slowly it reads, and a process spends at most ``buffer / interval`` frames
per client per second, one when it is busiest. A client whose socket
stays full (it does not read) for ``events.stall_timeout`` is closed with
code 4008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tqd.api.render import queue_json
from tqd.clock import Clock
from tqd.errors import BadRequest, StorageUnavailable, TqdError
from tqd.logs import log_failure
from tqd.models import Change, rfc3339, valid_name
from tqd.storage.base import Storage

log = logging.getLogger("tqd.api.events")

#: Changes kept for the clients to read (shared by all of them).
RING = 4096
#: The WebSocket sub-protocol chosen when the client offers it.
PROTOCOL = "tqd"
#: Close code for a client that did not read its messages.
CLOSE_TOO_SLOW = 4008
#: Most queues one subscription may name.
MAX_SUBSCRIBED = 1000
#: How often queue counts are read from the store while clients listen.
QUEUES_EVERY = 1.0


@dataclass
class EventSettings:
    """How the stream treats its clients (``[events]`` in the config)."""

    buffer: int = 100
    interval: float = 0.5
    stall_timeout: float = 30.0
    max_clients: int = 1000


@dataclass(eq=False)
class Client:
    """One connected WebSocket and where it is in the ring."""

    ws: web.WebSocketResponse
    queues: frozenset[str] | None
    cursor: int
    #: For a subscription to some queues: per queue, the changes counted so far.
    seen: dict[str, int] = field(default_factory=dict)
    sent_queues: bytes | None = None
    #: The version of the hub's queue counts this client was last given.
    queues_version: int = -1
    hello_due: bool = True
    #: Loop time at which a send started and has not finished (None: idle).
    blocked_since: float | None = None
    writer: asyncio.Task | None = None
    transport: asyncio.Transport | None = None
    closing: bool = False


class EventHub:
    """Fans the store's changes out to the WebSocket clients of this process."""

    def __init__(self, storage: Storage, clock: Clock, settings: EventSettings) -> None:
        self._storage = storage
        self._clock = clock
        self.settings = settings
        self._changes: list[Any] = [None] * RING
        self._encoded: list[bytes | None] = [None] * RING
        self._head = 0
        self.clients: set[Client] = set()
        #: queue -> number of clients subscribed to it by name
        self._watched: dict[str, int] = {}
        #: queue -> changes seen of a watched queue (for exact "dropped" counts)
        self._per_queue: dict[str, int] = {}
        self._signal: asyncio.Future | None = None
        self._queues: list[dict[str, Any]] | None = None
        self._queues_version = 0
        self._all_queues_frame: bytes | None = None
        self._ticker: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()
        self._last_at: tuple[float, str] = (0.0, "")
        #: Clients closed for being too slow, and task messages dropped (metrics).
        self.closed_slow = 0
        self.dropped = 0

    # -- input --------------------------------------------------------------

    def on_changes(self, changes: Any) -> None:
        """Storage listener: keep task changes in the ring while anyone listens."""
        if not self.clients:
            return
        at = self._clock.now()
        ring, encoded, head, watched = self._changes, self._encoded, self._head, self._watched
        for c in changes:
            if type(c) is not Change or not c.id:
                continue  # queue events, and the synthetic wake-ups after a resync
            i = head % RING
            ring[i] = (c, at)
            encoded[i] = None
            head += 1
            if watched and c.queue in watched:
                self._per_queue[c.queue] = self._per_queue.get(c.queue, 0) + 1
        if head != self._head:
            self._head = head
            self._wake()

    def _wake(self) -> None:
        fut = self._signal
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _wait(self) -> None:
        fut = self._signal
        if fut is None or fut.done():
            fut = self._signal = asyncio.get_running_loop().create_future()
        # asyncio.wait does not cancel the shared future when this client goes
        await asyncio.wait((fut,))

    def _encode(self, seq: int) -> bytes:
        i = seq % RING
        frame = self._encoded[i]
        if frame is None:
            c, at = self._changes[i]
            if at != self._last_at[0]:
                self._last_at = (at, rfc3339(at) or "")
            frame = self._encoded[i] = orjson.dumps(
                {"type": "task", "id": c.id, "queue": c.queue, "name": c.name,
                 "state": c.state, "at": self._last_at[1]}
            )
        return frame

    # -- clients ------------------------------------------------------------

    def _subscribe(self, client: Client, queues: frozenset[str] | None) -> None:
        for q in client.queues or ():
            self._watched[q] -= 1
            if not self._watched[q]:
                del self._watched[q]
                self._per_queue.pop(q, None)
        client.queues = queues
        client.seen = {}
        for q in queues or ():
            self._watched[q] = self._watched.get(q, 0) + 1
            client.seen[q] = self._per_queue.get(q, 0)
        client.cursor = self._head

    def _has_work(self, client: Client) -> bool:
        return (
            client.hello_due
            or client.cursor != self._head
            or client.queues_version != self._queues_version
        )

    def _task_frames(self, client: Client) -> tuple[list[bytes], int]:
        """The task messages to send now and how many were dropped; moves the cursor.

        Up to ``buffer`` changes since the last burst are all sent; a client
        that fell further behind gets none of them, only their number (it
        fetches the state again): under heavy load every client costs one
        small frame per interval instead of a stream it cannot use.
        """
        head, limit = self._head, self.settings.buffer
        first = max(client.cursor, head - RING)
        frames: list[bytes] = []
        if client.queues is None:
            total = head - client.cursor
            if total <= limit:
                frames = [self._encode(seq) for seq in range(first, head)]
        else:
            total = 0
            for q in client.queues:
                now_seen = self._per_queue.get(q, 0)
                total += now_seen - client.seen.get(q, 0)
                client.seen[q] = now_seen
            if total <= limit:
                subs, ring = client.queues, self._changes
                frames = [self._encode(seq) for seq in range(first, head)
                          if ring[seq % RING][0].queue in subs]
        client.cursor = head
        return frames, total - len(frames)

    def _queues_frame(self, client: Client) -> bytes | None:
        """The queue counts, if they changed since this client last got them.

        Every queue, whatever the subscription (which is about task messages):
        exactly what GET /v1/queues answers.
        """
        client.queues_version = self._queues_version
        if self._queues is None:
            return None
        if self._all_queues_frame is None:
            self._all_queues_frame = orjson.dumps({"type": "queues", "queues": self._queues})
        frame = self._all_queues_frame
        if frame == client.sent_queues:
            return None
        client.sent_queues = frame
        return frame

    async def _send(self, client: Client, frames: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        ws = client.ws
        for frame in frames:
            client.blocked_since = loop.time()
            await ws.send_frame(frame, WSMsgType.TEXT)
        client.blocked_since = None

    async def _writer(self, client: Client) -> None:
        interval = self.settings.interval
        try:
            while not client.closing:
                while not self._has_work(client):
                    await self._wait()
                frames: list[bytes] = []
                if client.hello_due:
                    client.hello_due = False
                    subs = None if client.queues is None else sorted(client.queues)
                    frames.append(orjson.dumps({"type": "hello", "queues": subs}))
                tasks, dropped = self._task_frames(client)
                frames += tasks
                if dropped:
                    self.dropped += dropped
                    frames.append(orjson.dumps({"type": "lagged", "dropped": dropped}))
                if client.queues_version != self._queues_version:
                    counts = self._queues_frame(client)
                    if counts is not None:
                        frames.append(counts)
                await self._send(client, frames)
                await asyncio.sleep(interval)
        except (ConnectionError, RuntimeError):
            pass  # the connection went away; the handler cleans up
        except Exception:
            log_failure(log, "events: a client's writer failed; closing it")
            await client.ws.close(code=1011, message=b"internal error")

    async def _close_slow(self, client: Client) -> None:
        client.closing = True
        self.closed_slow += 1
        if client.writer is not None:
            client.writer.cancel()
        log.warning("closing an events client that did not read for %.0fs",
                    self.settings.stall_timeout)
        ws = client.ws
        try:
            await asyncio.wait_for(
                ws.close(code=CLOSE_TOO_SLOW, message=b"too slow: messages were not read",
                         drain=False),
                timeout=5.0,
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        # The socket may still hold data the client never read: let it go.
        transport = client.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    # -- the 1 s tick: queue counts and slow clients --------------------------

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.clients:
                try:
                    await self._read_queues()
                except Exception:
                    log_failure(log, "events: reading the queue counts failed")
                now = loop.time()
                for client in list(self.clients):
                    since = client.blocked_since
                    if since is not None and now - since > self.settings.stall_timeout \
                            and not client.closing:
                        job = asyncio.create_task(self._close_slow(client))
                        self._closing.add(job)
                        job.add_done_callback(self._closing.discard)
            await asyncio.sleep(QUEUES_EVERY)

    async def _read_queues(self) -> None:
        try:
            infos = await self._storage.queues()
        except StorageUnavailable as err:
            log.debug("events: queue counts not read: %s", err)
            return
        queues = [queue_json(q) for q in infos]
        if queues != self._queues:
            self._queues = queues
            self._all_queues_frame = None
            self._queues_version += 1
            self._wake()

    async def start(self) -> None:
        """Start the tick (queue counts, slow clients) and listen to the store."""
        self._storage.add_listener(self.on_changes)
        self._ticker = asyncio.create_task(self._tick(), name="tqd-events-tick")

    async def stop(self) -> None:
        """Close every client (1001 going away) and stop the tick."""
        self._storage.remove_listener(self.on_changes)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for client in list(self.clients):
            client.closing = True
            if client.writer is not None:
                client.writer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client.ws.close(code=1001, message=b"tqd is stopping", drain=False), 2.0
                )

    # -- the endpoint -------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/events: upgrade to a WebSocket and stream (module docstring)."""
        ws = web.WebSocketResponse(
            protocols=(PROTOCOL,), compress=False, heartbeat=30.0, max_msg_size=64 * 1024,
            timeout=5.0,
        )
        if not ws.can_prepare(request).ok:
            raise BadRequest("this endpoint is a WebSocket: send a GET with Upgrade: websocket")
        queues = parse_queues(request.query.get("queues"), "queues")
        if len(self.clients) >= self.settings.max_clients:
            raise TooManyClients(
                f"too many event clients ({self.settings.max_clients}); try again later"
            )
        await ws.prepare(request)
        client = Client(ws=ws, queues=None, cursor=self._head, transport=request.transport)
        self._subscribe(client, queues)
        self.clients.add(client)
        client.writer = asyncio.create_task(self._writer(client), name="tqd-events-client")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    reply = self._on_message(client, msg.data)
                    if reply is not None:
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await ws.send_frame(reply, WSMsgType.TEXT)
                else:
                    break  # binary or an error: nothing we understand
        finally:
            client.closing = True
            self.clients.discard(client)
            self._subscribe(client, None)
            if not self.clients:
                # Counts are read only while someone listens: do not hand the
                # next client counts that have gone stale meanwhile.
                self._queues = self._all_queues_frame = None
            if client.writer is not None:
                client.writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await client.writer
        return ws

    def _on_message(self, client: Client, text: str) -> bytes | None:
        try:
            body = orjson.loads(text)
            if not isinstance(body, dict) or set(body) != {"subscribe"}:
                raise BadRequest('expected {"subscribe": ["queue", ...]} or {"subscribe": null}')
            subs = body["subscribe"]
            if subs is not None:
                if not isinstance(subs, list) or not all(isinstance(q, str) for q in subs):
                    raise BadRequest("subscribe: a list of queue names, or null")
                subs = parse_queues(",".join(subs), "subscribe") if subs else frozenset()
        except orjson.JSONDecodeError:
            err: TqdError = BadRequest("malformed JSON message")
        except BadRequest as bad:
            err = bad
        else:
            self._subscribe(client, subs)
            self._wake()
            return None
        return orjson.dumps({"type": "error", **err.to_json()})


class TooManyClients(TqdError):
    """The stream has as many clients as it takes."""

    code = "too_many_clients"
    status = 503


def parse_queues(raw: str | None, where: str) -> frozenset[str] | None:
    """``a,b`` → {a, b}; absent or empty → None (every queue); BadRequest names a bad one."""
    if raw is None or raw == "":
        return None
    names = raw.split(",")
    if len(names) > MAX_SUBSCRIBED:
        raise BadRequest(f"{where}: at most {MAX_SUBSCRIBED} queues")
    for name in names:
        if not valid_name(name):
            raise BadRequest(f"{where}: {name[:64]!r} is not a queue name")
    return frozenset(names)
