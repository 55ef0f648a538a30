"""A client for tqd's HTTP API (synchronous, standard library only).

Used by the CLI. Errors from the server raise ApiError with the server's
code and message; a server that cannot be reached raises Unreachable.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tqd.config import DEFAULT_URL

FINISHED = ("completed", "failed", "cancelled")


class ApiError(Exception):
    """The server answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(Exception):
    """No answer from the server at all."""


class Client:
    """Calls one tqd server; ``url`` defaults to ``$TQD_URL`` or the local daemon."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("TQD_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("TQD_TOKEN")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None,
              timeout: float | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                detail = json.loads(raw)["error"]
                raise ApiError(err.code, detail["code"], detail["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(err.code, "http_error", raw.decode(errors="replace")[:200] or err.reason) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise Unreachable(f"cannot reach tqd at {self.url}: {reason}") from None
        return json.loads(raw) if raw else None

    def enqueue(self, name: str, payload: Any = None, **options: Any) -> dict:
        """Enqueue one task; options are the API's fields (queue, priority, delay, ...)."""
        body = {"name": name, "payload": payload, **{k: v for k, v in options.items() if v is not None}}
        return self._call("POST", "/v1/tasks", body)

    def enqueue_many(self, tasks: list[dict]) -> list[dict]:
        """Enqueue several tasks at once, all or none."""
        return self._call("POST", "/v1/tasks/batch", {"tasks": tasks})["tasks"]

    def get(self, task_id: str, wait: float | None = None) -> dict:
        """The task; with ``wait``, answer as soon as it finishes or after ``wait`` s."""
        return self._call("GET", f"/v1/tasks/{_q(task_id)}", params={"wait": wait},
                          timeout=(wait or 0) + self.timeout)

    def wait(self, task_id: str, timeout: float | None = None) -> dict:
        """Block until the task is completed, failed or cancelled (or ``timeout`` s pass)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Waits of 25 s at a time stay under any sensible [api] max_wait.
            left = 25.0 if deadline is None else min(25.0, max(0.0, deadline - time.monotonic()))
            task = self.get(task_id, wait=left)
            if task["state"] in FINISHED or (deadline is not None and time.monotonic() >= deadline):
                return task

    def list(self, *, state: str | None = None, queue: str | None = None, name: str | None = None,
             limit: int | None = None, cursor: str | None = None) -> dict:
        """A page of tasks, newest first: ``{"tasks": [...], "next_cursor": ...}``."""
        params = {"state": state, "queue": queue, "name": name, "limit": limit, "cursor": cursor}
        return self._call("GET", "/v1/tasks", params=params)

    def cancel(self, task_id: str) -> dict:
        return self._call("POST", f"/v1/tasks/{_q(task_id)}/cancel")

    def retry(self, task_id: str) -> dict:
        return self._call("POST", f"/v1/tasks/{_q(task_id)}/retry")

    def delete(self, task_id: str) -> None:
        self._call("DELETE", f"/v1/tasks/{_q(task_id)}")

    def queues(self) -> list[dict]:
        return self._call("GET", "/v1/queues")["queues"]

    def queue(self, name: str) -> dict:
        return self._call("GET", f"/v1/queues/{_q(name)}")

    def pause(self, name: str) -> dict:
        return self._call("POST", f"/v1/queues/{_q(name)}/pause")

    def resume(self, name: str) -> dict:
        return self._call("POST", f"/v1/queues/{_q(name)}/resume")


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")
