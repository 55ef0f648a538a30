"""The synchronous client, standard library only (the CLI starts fast with it)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from tqd.client import calls
from tqd.client.calls import FINISHED, Call, QueueJSON, TaskJSON
from tqd.client.errors import Unreachable, api_error
from tqd.config import DEFAULT_URL


class Client:
    """Calls one tqd server over HTTP and blocks for each answer.

    ``url`` defaults to ``$TQD_URL`` or the local daemon, ``token`` to
    ``$TQD_TOKEN``; ``timeout`` bounds each request (long polls add their
    wait). Errors from the server raise ApiError; a server that cannot be
    reached raises Unreachable.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("TQD_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("TQD_TOKEN")
        self.timeout = timeout

    def send(self, call: Call) -> Any:
        """Send one prepared call and return its answer (or its ``key`` field)."""
        data = None if call.body is None else json.dumps(call.body).encode()
        request = urllib.request.Request(self.url + call.path + call.query(), data=data,
                                         method=call.method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout + call.holds) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise api_error(err.code, err.read(), str(err.reason)) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise Unreachable(f"cannot reach tqd at {self.url}: {reason}") from None
        answer = json.loads(raw) if raw else None
        return answer if call.key is None or answer is None else answer[call.key]

    # -- tasks --------------------------------------------------------------

    def enqueue(self, name: str, payload: Any = None, **options: Any) -> TaskJSON:
        """Enqueue one task. Options: queue, priority, delay, run_at,
        max_attempts, timeout, idempotency_key, unique_key, group (the
        fairness group, a tenant say) (None: the configured default)."""
        return self.send(calls.enqueue(name, payload, **options))

    def enqueue_many(self, tasks: list[dict[str, Any]]) -> list[TaskJSON]:
        """Enqueue several tasks at once, all or none; each dict holds ``name``,
        ``payload`` and any option of enqueue (see ``calls.task_fields``)."""
        return self.send(calls.enqueue_many(tasks))

    def get(self, task_id: str, wait: float | None = None) -> TaskJSON:
        """The task; with ``wait``, answer as soon as it finishes or after ``wait`` s."""
        return self.send(calls.get(task_id, wait))

    def wait(self, task_id: str, timeout: float | None = None) -> TaskJSON:
        """Block until the task is completed, failed or cancelled (or ``timeout`` s pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Waits of 25 s at a time stay under any sensible [api] max_wait.
            left = 25.0 if deadline is None else min(25.0, max(0.0, deadline - time.monotonic()))
            task = self.get(task_id, wait=left)
            if task["state"] in FINISHED or (deadline is not None and time.monotonic() >= deadline):
                return task

    def list(self, *, state: str | None = None, queue: str | None = None, name: str | None = None,
             limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """A page of tasks, newest first: ``{"tasks": [...], "next_cursor": ...}``."""
        return self.send(calls.list_tasks(state, queue, name, limit, cursor))

    def cancel(self, task_id: str) -> TaskJSON:
        """Cancel a pending, scheduled or processing task."""
        return self.send(calls.task_action(task_id, "cancel"))

    def retry(self, task_id: str) -> TaskJSON:
        """Put a failed or cancelled task back to pending."""
        return self.send(calls.task_action(task_id, "retry"))

    def delete(self, task_id: str) -> None:
        """Delete a task that is not processing."""
        self.send(calls.delete(task_id))

    # -- queues -------------------------------------------------------------

    def queues(self) -> list[QueueJSON]:
        """Every queue with its counts per state and its limits."""
        return self.send(calls.queues())

    def queue(self, name: str) -> QueueJSON:
        return self.send(calls.queue(name))

    def pause(self, name: str) -> QueueJSON:
        """Lease nothing more from the queue until resumed."""
        return self.send(calls.queue_action(name, "pause"))

    def resume(self, name: str) -> QueueJSON:
        return self.send(calls.queue_action(name, "resume"))

    def update_queue(self, name: str, **settings: Any) -> QueueJSON:
        """Change some of a queue's settings and return the queue. Keys:
        paused, concurrency, rate_limit, rate_interval, rate_burst,
        group_concurrency; a key given as None removes that limit, a key
        left out keeps its value. The change holds across every process
        sharing the store."""
        return self.send(calls.update_queue(name, settings))

    # -- the pull API of remote workers -------------------------------------

    def lease(self, queue: str, max: int = 1, *, wait: float = 0.0,
              visibility_timeout: float | None = None, worker: str | None = None) -> list[TaskJSON]:
        """Lease up to ``max`` tasks of a remote queue, waiting up to ``wait`` s
        for one; each task has ``lease: {"token", "expires_at"}``."""
        return self.send(calls.lease(queue, max, wait=wait, visibility_timeout=visibility_timeout,
                                     worker=worker))

    def heartbeat(self, task_id: str, token: str, extend: float | None = None) -> dict[str, Any]:
        """Keep a lease; ApiError 409 (``stale_lease``) when it is no longer held."""
        return self.send(calls.heartbeat(task_id, token, extend))

    def progress(self, task_id: str, token: str, fraction: float, message: str = "") -> dict[str, Any]:
        """Report how far the task got (0 to 1); ApiError 409 when the lease is stale."""
        return self.send(calls.progress(task_id, token, fraction, message))

    def complete(self, task_id: str, token: str, result: Any = None) -> dict[str, Any]:
        """Report success with ``result``; ApiError 409 when the lease is stale."""
        return self.send(calls.complete(task_id, token, result))

    def fail(self, task_id: str, token: str, error: str, *, retry: bool = True,
             delay: float | None = None) -> dict[str, Any]:
        """Report a failed attempt; ApiError 409 when the lease is stale."""
        return self.send(calls.fail(task_id, token, error, retry=retry, delay=delay))

    def settle(self, outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Report many outcomes at once (``{"id", "token", "outcome": "complete"
        | "fail" | "release", ...}``); one result per outcome, in order."""
        return self.send(calls.settle(outcomes))
