"""The subscriber that brings other processes' change events to this one.

Scripts PUBLISH one message per batch on ``<prefix>:events``. One task per
RedisStorage keeps a SUBSCRIBE open on a connection of its own and hands
every message to the backend, which drops the ones it published itself.

When the connection drops, messages published meanwhile are lost (pub/sub
keeps nothing). The subscriber reconnects with capped, jittered exponential
backoff and, once subscribed again, calls ``on_resync`` so the backend can
emit a synthetic ``pending`` change per queue that holds pending tasks:
an idle worker pool that missed a wake-up looks again. Subscribing first and
reading the counts second leaves no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tqd.errors import TqdError
from tqd.logs import log_failure

log = logging.getLogger("tqd.storage.redis")

#: How long one read waits for a message before the next read checks that
#: the connection is alive (a PING, by redis-py's health check).
READ_WAIT = 15.0
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 2.0


class Subscriber:
    """Keeps a subscription to one channel alive and forwards its messages."""

    def __init__(
        self,
        client: Redis,
        channel: str,
        on_message: Callable[[bytes], None],
        on_resync: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_message = on_message
        self._on_resync = on_resync
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        #: Whether the subscription is up right now (for tests and health).
        self.connected = False
        #: How many times the subscription came back after a drop.
        self.resyncs = 0

    async def start(self, wait: float) -> bool:
        """Start listening; return whether the first SUBSCRIBE succeeded in time."""
        self._task = asyncio.create_task(self._run(), name="tqd-redis-events")
        try:
            await asyncio.wait_for(self._ready.wait(), wait)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop listening (the caller closes the client)."""
        self._stopping = True
        task, self._task = self._task, None
        # A client library may turn the cancellation of a read into a
        # connection error, which the loop survives by design: cancel until
        # the task has ended (it also checks _stopping after each error).
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if task is not None and not task.cancelled():
            with contextlib.suppress(BaseException):
                task.result()

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        dropped = False
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if dropped:
                    await self._on_resync()
                    self.resyncs += 1
                    log.info("storage: Redis event subscription restored")
                self.connected = True
                self._ready.set()
                delay = BACKOFF_FIRST
                await self._read(pubsub)
            except (RedisError, OSError, TqdError) as err:
                # TqdError: the resync's reads translated a Redis failure
                if self.connected or not dropped:
                    log.warning("storage: Redis event subscription lost (%s); reconnecting", err)
                self.connected = False
                dropped = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if self._stopping:
                return
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, BACKOFF_CAP)

    async def _read(self, pubsub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=READ_WAIT)
            if message is not None and message.get("type") == "message":
                try:
                    self._on_message(message["data"])
                except Exception:
                    log_failure(log, "storage: bad Redis event message dropped")
