"""What each API call sends and which part of the answer it returns.

Both clients (sync and async) build their requests here, so paths, bodies
and parameters are written once. A :class:`Call` is plain data; a client
sends it and returns ``answer[call.key]`` (or the whole answer when
``key`` is None).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: A task as the API shows it: id, name, queue, payload, state, attempts,
#: result, error, times, ... (see the README); leased tasks add ``lease``.
TaskJSON = dict[str, Any]
#: A queue: name, paused, counts per state, limits.
QueueJSON = dict[str, Any]

FINISHED = ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Call:
    """One request: method, path, JSON body (None: no body), query parameters."""

    method: str
    path: str
    body: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    #: The field of the answer to return; None returns it whole.
    key: str | None = None
    #: Seconds the server may hold the request on purpose (long polls).
    holds: float = 0.0

    def query(self) -> str:
        """The query string (with its '?'), or ''."""
        present = {k: _param(v) for k, v in self.params.items() if v is not None}
        return "?" + urllib.parse.urlencode(present) if present else ""


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _drop_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def task_fields(
    name: str,
    payload: Any = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay: float | None = None,
    run_at: datetime | str | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
    unique_key: str | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """The body of one task to enqueue; unset options take the task's configured defaults."""
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise ValueError("run_at: give a timezone-aware datetime")
        run_at = run_at.isoformat()
    return {"name": name, "payload": payload, **_drop_none({
        "queue": queue, "priority": priority, "delay": delay, "run_at": run_at,
        "max_attempts": max_attempts, "timeout": timeout, "idempotency_key": idempotency_key,
        "unique_key": unique_key, "group": group,
    })}


# -- tasks ----------------------------------------------------------------------


def enqueue(name: str, payload: Any = None, **options: Any) -> Call:
    return Call("POST", "/v1/tasks", task_fields(name, payload, **options))


def enqueue_many(tasks: list[dict[str, Any]]) -> Call:
    return Call("POST", "/v1/tasks/batch", {"tasks": tasks}, key="tasks")


def get(task_id: str, wait: float | None = None) -> Call:
    return Call("GET", f"/v1/tasks/{_q(task_id)}", params={"wait": wait}, holds=wait or 0.0)


def list_tasks(state: str | None, queue: str | None, name: str | None, limit: int | None,
               cursor: str | None) -> Call:
    params = {"state": state, "queue": queue, "name": name, "limit": limit, "cursor": cursor}
    return Call("GET", "/v1/tasks", params=params)


def task_action(task_id: str, action: str) -> Call:
    return Call("POST", f"/v1/tasks/{_q(task_id)}/{action}")


def delete(task_id: str) -> Call:
    return Call("DELETE", f"/v1/tasks/{_q(task_id)}")


# -- queues ---------------------------------------------------------------------


def queues() -> Call:
    return Call("GET", "/v1/queues", key="queues")


def queue(name: str) -> Call:
    return Call("GET", f"/v1/queues/{_q(name)}")


def update_queue(name: str, settings: dict[str, Any]) -> Call:
    """PATCH the queue: each key given is set (None removes a limit)."""
    return Call("PATCH", f"/v1/queues/{_q(name)}", dict(settings))


def queue_action(name: str, action: str, body: Any = None) -> Call:
    return Call("POST", f"/v1/queues/{_q(name)}/{action}", body)


# -- the pull API of remote workers ---------------------------------------------


def lease(queue: str, max: int = 1, *, wait: float = 0.0, visibility_timeout: float | None = None,
          worker: str | None = None) -> Call:
    body = {"max": max, "wait": wait,
            **_drop_none({"visibility_timeout": visibility_timeout, "worker": worker})}
    return Call("POST", f"/v1/queues/{_q(queue)}/lease", body, key="tasks", holds=wait)


def heartbeat(task_id: str, token: str, extend: float | None = None) -> Call:
    body = {"token": token, **_drop_none({"extend": extend})}
    return Call("POST", f"/v1/tasks/{_q(task_id)}/heartbeat", body)


def progress(task_id: str, token: str, fraction: float, message: str = "") -> Call:
    body = {"token": token, "progress": fraction, "message": message}
    return Call("POST", f"/v1/tasks/{_q(task_id)}/progress", body)


def complete(task_id: str, token: str, result: Any = None) -> Call:
    return Call("POST", f"/v1/tasks/{_q(task_id)}/complete", {"token": token, "result": result})


def fail(task_id: str, token: str, error: str, *, retry: bool = True,
         delay: float | None = None) -> Call:
    body = {"token": token, "error": error, "retry": retry, **_drop_none({"delay": delay})}
    return Call("POST", f"/v1/tasks/{_q(task_id)}/fail", body)


def settle(outcomes: list[dict[str, Any]]) -> Call:
    return Call("POST", "/v1/tasks/settle", {"outcomes": outcomes}, key="results")
