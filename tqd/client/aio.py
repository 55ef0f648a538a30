"""The asynchronous client (aiohttp): the calls of ``Client``, awaited."""

from __future__ import annotations

import os
import time
from typing import Any

import aiohttp
import orjson

from tqd.client import calls
from tqd.client.calls import FINISHED, Call, QueueJSON, TaskJSON
from tqd.client.errors import Unreachable, api_error
from tqd.config import DEFAULT_URL


class AsyncClient:
    """Calls one tqd server over HTTP from asyncio code.

    ``url`` defaults to ``$TQD_URL`` or the local daemon, ``token`` to
    ``$TQD_TOKEN``; ``timeout`` bounds each request (long polls add their
    wait). Use it as ``async with AsyncClient(...) as client`` or call
    ``close()``. Errors from the server raise ApiError; a server that cannot
    be reached raises Unreachable. A ``session`` passed in is used as is and
    not closed.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        session: aiohttp.ClientSession | None = None,
        connections: int = 16,
    ) -> None:
        self.url = (url or os.environ.get("TQD_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("TQD_TOKEN")
        self.timeout = timeout
        self._session = session
        self._own_session = session is None
        self._connections = connections

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections (only those of a session this client made)."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def send(self, call: Call) -> Any:
        """Send one prepared call and return its answer (or its ``key`` field)."""
        headers = {}
        data = None
        if call.body is not None:
            data = orjson.dumps(call.body)
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        timeout = aiohttp.ClientTimeout(total=self.timeout + call.holds)
        try:
            async with self._http().request(
                call.method, self.url + call.path + call.query(), data=data, headers=headers,
                timeout=timeout, allow_redirects=False,
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise api_error(response.status, raw, response.reason or "")
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise Unreachable(f"cannot reach tqd at {self.url}: {err or type(err).__name__}") from None
        answer = orjson.loads(raw) if raw else None
        return answer if call.key is None or answer is None else answer[call.key]

    # -- tasks --------------------------------------------------------------

    async def enqueue(self, name: str, payload: Any = None, **options: Any) -> TaskJSON:
        """Enqueue one task. Options: queue, priority, delay, run_at,
        max_attempts, timeout, idempotency_key, unique_key, group (the
        fairness group, a tenant say) (None: the configured default)."""
        return await self.send(calls.enqueue(name, payload, **options))

    async def enqueue_many(self, tasks: list[dict[str, Any]]) -> list[TaskJSON]:
        """Enqueue several tasks at once, all or none."""
        return await self.send(calls.enqueue_many(tasks))

    async def get(self, task_id: str, wait: float | None = None) -> TaskJSON:
        """The task; with ``wait``, answer as soon as it finishes or after ``wait`` s."""
        return await self.send(calls.get(task_id, wait))

    async def wait(self, task_id: str, timeout: float | None = None) -> TaskJSON:  # noqa: ASYNC109
        """Return once the task is completed, failed or cancelled, or after
        ``timeout`` s with the task as it then is (asyncio.timeout would raise)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Waits of 25 s at a time stay under any sensible [api] max_wait.
            left = 25.0 if deadline is None else min(25.0, max(0.0, deadline - time.monotonic()))
            task = await self.get(task_id, wait=left)
            if task["state"] in FINISHED or (deadline is not None and time.monotonic() >= deadline):
                return task

    async def list(self, *, state: str | None = None, queue: str | None = None,
                   name: str | None = None, limit: int | None = None,
                   cursor: str | None = None) -> dict[str, Any]:
        """A page of tasks, newest first: ``{"tasks": [...], "next_cursor": ...}``."""
        return await self.send(calls.list_tasks(state, queue, name, limit, cursor))

    async def cancel(self, task_id: str) -> TaskJSON:
        """Cancel a pending, scheduled or processing task."""
        return await self.send(calls.task_action(task_id, "cancel"))

    async def retry(self, task_id: str) -> TaskJSON:
        """Put a failed or cancelled task back to pending."""
        return await self.send(calls.task_action(task_id, "retry"))

    async def delete(self, task_id: str) -> None:
        """Delete a task that is not processing."""
        await self.send(calls.delete(task_id))

    # -- queues -------------------------------------------------------------

    async def queues(self) -> list[QueueJSON]:
        """Every queue with its counts per state and its limits."""
        return await self.send(calls.queues())

    async def queue(self, name: str) -> QueueJSON:
        return await self.send(calls.queue(name))

    async def pause(self, name: str) -> QueueJSON:
        """Lease nothing more from the queue until resumed."""
        return await self.send(calls.queue_action(name, "pause"))

    async def resume(self, name: str) -> QueueJSON:
        return await self.send(calls.queue_action(name, "resume"))

    async def update_queue(self, name: str, **settings: Any) -> QueueJSON:
        """Change some of a queue's settings and return the queue. Keys:
        paused, concurrency, rate_limit, rate_interval, rate_burst,
        group_concurrency; a key given as None removes that limit, a key
        left out keeps its value. The change holds across every process
        sharing the store."""
        return await self.send(calls.update_queue(name, settings))

    # -- the pull API of remote workers -------------------------------------

    async def lease(self, queue: str, max: int = 1, *, wait: float = 0.0,
                    visibility_timeout: float | None = None,
                    worker: str | None = None) -> list[TaskJSON]:
        """Lease up to ``max`` tasks of a remote queue, waiting up to ``wait`` s
        for one; each task has ``lease: {"token", "expires_at"}``."""
        return await self.send(calls.lease(queue, max, wait=wait,
                                           visibility_timeout=visibility_timeout, worker=worker))

    async def heartbeat(self, task_id: str, token: str,
                        extend: float | None = None) -> dict[str, Any]:
        """Keep a lease; ApiError 409 (``stale_lease``) when it is no longer held."""
        return await self.send(calls.heartbeat(task_id, token, extend))

    async def progress(self, task_id: str, token: str, fraction: float,
                       message: str = "") -> dict[str, Any]:
        """Report how far the task got (0 to 1); ApiError 409 when the lease is stale."""
        return await self.send(calls.progress(task_id, token, fraction, message))

    async def complete(self, task_id: str, token: str, result: Any = None) -> dict[str, Any]:
        """Report success with ``result``; ApiError 409 when the lease is stale."""
        return await self.send(calls.complete(task_id, token, result))

    async def fail(self, task_id: str, token: str, error: str, *, retry: bool = True,
                   delay: float | None = None) -> dict[str, Any]:
        """Report a failed attempt; ApiError 409 when the lease is stale."""
        return await self.send(calls.fail(task_id, token, error, retry=retry, delay=delay))

    async def settle(self, outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Report many outcomes at once (``{"id", "token", "outcome": "complete"
        | "fail" | "release", ...}``); one result per outcome, in order."""
        return await self.send(calls.settle(outcomes))

