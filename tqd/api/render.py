"""How tasks, queues and processes look in API responses (the JSON contract)."""

from __future__ import annotations

from typing import Any

import orjson

from tqd.models import Firing, QueueInfo, QueueLimits, Task, WorkerInfo, rfc3339
from tqd.runtime.cron import Schedule


def task_json(t: Task) -> dict[str, Any]:
    """A task as the API shows it; payload and result are embedded as stored."""
    return {
        "id": t.id,
        "name": t.name,
        "queue": t.queue,
        "payload": orjson.Fragment(t.payload),
        "priority": t.priority,
        "state": t.state,
        "attempts": t.attempts,
        "max_attempts": t.max_attempts,
        "result": None if t.result is None else orjson.Fragment(t.result),
        "error": t.error,
        "errors": t.errors,
        "created_at": rfc3339(t.created_at),
        "run_at": rfc3339(t.run_at),
        "started_at": rfc3339(t.started_at),
        "finished_at": rfc3339(t.finished_at),
        "idempotency_key": t.idempotency_key,
        "timeout": t.timeout,
        "worker": t.worker,
        "unique_key": t.unique_key,
        "group": t.group,
        "progress": None if t.progress is None else orjson.Fragment(t.progress),
    }


def limits_json(limits: QueueLimits) -> dict[str, Any]:
    """A queue's limits; null for a limit not set (``rate_interval`` always
    holds its seconds)."""
    return {
        "concurrency": limits.concurrency,
        "rate_limit": limits.rate_limit,
        "rate_interval": limits.rate_interval,
        "rate_burst": limits.rate_burst,
        "group_concurrency": limits.group_concurrency,
    }


def queue_json(q: QueueInfo) -> dict[str, Any]:
    """A queue: name, paused, counts per state, limits."""
    return {"name": q.name, "paused": q.paused, "counts": q.counts, "limits": limits_json(q.limits)}


def worker_json(w: WorkerInfo) -> dict[str, Any]:
    """A tqd process sharing the store."""
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "version": w.version,
        "started_at": rfc3339(w.started_at),
        "concurrency": w.concurrency,
        "running": w.running,
        "last_heartbeat": rfc3339(w.last_heartbeat),
    }


def schedule_json(
    s: Schedule, queue: str, priority: int, firing: Firing | None, next_at: float | None
) -> dict[str, Any]:
    """A cron schedule: its definition (``queue`` and ``priority`` resolved),
    the scheduled instant it last fired for and when, and when it fires next."""
    return {
        "name": s.name,
        "cron": s.spec.expression,
        "timezone": s.spec.timezone,
        "task": s.task,
        "payload": orjson.Fragment(s.payload),
        "queue": queue,
        "priority": priority,
        "catch_up": s.catch_up,
        "last_instant": rfc3339(firing.instant) if firing else None,
        "last_fired_at": rfc3339(firing.fired_at) if firing else None,
        "next_fire_at": rfc3339(next_at),
    }
