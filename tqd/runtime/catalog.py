"""The task names this process knows, and how a new task of each is built.

A client names a task; the catalog decides everything else from
configuration: which handler runs it, its queue, attempts, timeouts and
backoff. The builtin ``tqd.*`` tasks exist with no configuration at all.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import msgspec
import orjson

from tqd.config import (
    BuiltinHandler,
    Config,
    HandlerConfig,
    PythonHandler,
    RemoteHandler,
    TaskConfig,
    parse_handler_string,
)
from tqd.errors import BadRequest, ConfigError, UnknownTask
from tqd.ids import IdGenerator
from tqd.models import Task

BUILTIN_TASKS = ("noop", "echo", "sleep", "fail")


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """Everything configured for one task name, defaults applied."""

    name: str
    handler: HandlerConfig
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    visibility_timeout: float
    backoff_base: float
    backoff_max: float
    #: Seconds a task holds its unique key; None: the name is not unique.
    unique_for: float | None = None

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the attempt after ``attempt`` (1-based).

        Exponential with full jitter: uniform in [0, min(max, base·2^(attempt-1))],
        so retries of many failed tasks spread out instead of arriving together.
        """
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt - 1, 62))
        return (rng or random).uniform(0.0, ceiling)


class NewTask(msgspec.Struct, frozen=True):
    """What a client asks for; None means "the definition's default".

    A Struct, not a frozen dataclass: one is built per task enqueued, and a
    frozen dataclass's __init__ (a setattr through object per field) cost
    more than the rest of reading the task from the request."""

    name: str
    payload: bytes = b"null"
    queue: str | None = None
    priority: int | None = None
    run_at: float | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    idempotency_key: str | None = None
    #: For names with unique_for; None means a hash of the payload.
    unique_key: str | None = None
    #: The fairness group (see tqd.models.Task.group); None: none.
    group: str | None = None


def payload_key(payload: bytes) -> str:
    """The unique key of a payload: a hash of its canonical JSON (keys
    sorted, no spaces), so payloads equal as JSON share a key."""
    canonical = orjson.dumps(orjson.loads(payload), option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()[:32]


class Catalog:
    """Task definitions by name, built once from a Config."""

    def __init__(self, config: Config, ids: IdGenerator | None = None) -> None:
        """Definitions from ``config``; ``ids`` carries the id generator over a
        reload, so ids from this process keep increasing strictly."""
        defs: dict[str, TaskDefinition] = {}
        for builtin in BUILTIN_TASKS:
            name = f"tqd.{builtin}"
            defs[name] = self._define(config, name, TaskConfig(), BuiltinHandler(name=builtin))
        for name, task in config.tasks.items():
            handler = task.handler
            if handler is None:  # a builtin name tuned in config
                handler = defs[name].handler if name in defs else None
            elif isinstance(handler, str):
                handler = parse_handler_string(handler, f"tasks.{name}.handler")
            if handler is None:
                raise UnknownTask(f"tasks.{name}: handler missing")
            defs[name] = self._define(config, name, task, handler)
        self._defs = defs
        self.ids = ids or IdGenerator()
        self._remote_queues = _remote_queues(config, defs)

    @staticmethod
    def _define(config: Config, name: str, task: TaskConfig, handler: HandlerConfig) -> TaskDefinition:
        d = config.defaults
        return TaskDefinition(
            name=name,
            handler=handler,
            queue=task.queue or d.queue,
            priority=task.priority,
            max_attempts=task.max_attempts or d.max_attempts,
            timeout=task.timeout if task.timeout is not None else d.timeout,
            visibility_timeout=task.visibility_timeout or d.visibility_timeout,
            backoff_base=task.backoff_base or d.backoff_base,
            backoff_max=task.backoff_max or d.backoff_max,
            unique_for=task.unique_for,
        )

    def get(self, name: str) -> TaskDefinition | None:
        """The definition of ``name``, or None."""
        return self._defs.get(name)

    def require(self, name: str) -> TaskDefinition:
        """The definition of ``name``; UnknownTask (422) lists the known names."""
        found = self._defs.get(name)
        if found is None:
            known = ", ".join(sorted(self._defs))
            raise UnknownTask(f"name: unknown task {name!r}; known tasks: {known}")
        return found

    def names(self) -> list[str]:
        """Every known task name, sorted."""
        return sorted(self._defs)

    def definitions(self) -> list[TaskDefinition]:
        """Every definition, sorted by name."""
        return [self._defs[n] for n in sorted(self._defs)]

    def queues(self) -> set[str]:
        """The queues that task definitions route to."""
        return {d.queue for d in self._defs.values()}

    def remote_queues(self) -> frozenset[str]:
        """Queues whose tasks remote workers lease over the API; the local pool
        never serves them, and they hold no other tasks."""
        return self._remote_queues

    def build(self, request: NewTask, now: float) -> Task:
        """A complete Task for ``request``: id, defaults and initial state.

        A ``run_at`` in the future makes the task ``scheduled``; otherwise it
        is ``pending`` at once. A remote task goes only to a remote queue and
        any other task never to one (BadRequest names the queue). A name with
        ``unique_for`` gets its unique key (BadRequest for a ``unique_key`` on
        a name without it).
        """
        d = self.require(request.name)
        queue = request.queue or d.queue
        remote = isinstance(d.handler, RemoteHandler)
        if queue != d.queue and (queue in self._remote_queues) != remote:
            if remote:
                raise BadRequest(
                    f"queue: {request.name!r} runs on remote workers, which lease from "
                    f"queue {d.queue!r} only; {queue!r} is served here"
                )
            raise BadRequest(
                f"queue: {queue!r} is leased by remote workers; {request.name!r} runs in tqd "
                "and cannot go there"
            )
        max_attempts = request.max_attempts or d.max_attempts
        delayed = request.run_at is not None and request.run_at > now
        unique_key = unique_until = None
        if d.unique_for is not None:
            unique_key = request.unique_key or payload_key(request.payload)
            unique_until = now + d.unique_for
        elif request.unique_key is not None:
            raise BadRequest(
                f"unique_key: task {d.name!r} is not unique (set unique_for in [tasks.{d.name}])"
            )
        return Task(
            self.ids.new(now),
            d.name,
            queue,
            request.payload,
            d.priority if request.priority is None else request.priority,
            "scheduled" if delayed else "pending",
            0,
            max_attempts,
            max_attempts,
            now,
            request.run_at if delayed else None,
            idempotency_key=request.idempotency_key,
            timeout=request.timeout if request.timeout is not None else d.timeout,
            visibility_timeout=d.visibility_timeout,
            unique_key=unique_key,
            unique_until=unique_until,
            group=request.group,
        )


def _remote_queues(config: Config, defs: dict[str, TaskDefinition]) -> frozenset[str]:
    """The queues of remote task names; ConfigError when one also holds a
    local name or is listed in worker.queues (the local pool would run the
    tasks of remote workers, or take theirs)."""
    remote = {d.queue for d in defs.values() if isinstance(d.handler, RemoteHandler)}
    for d in sorted(defs.values(), key=lambda d: d.name):
        if d.queue in remote and not isinstance(d.handler, RemoteHandler):
            others = sorted(
                o.name for o in defs.values()
                if o.queue == d.queue and isinstance(o.handler, RemoteHandler)
            )
            raise ConfigError(
                f"{config.source}: tasks.{others[0]}: queue {d.queue!r} holds remote tasks "
                f"({', '.join(others)}) and {d.name!r}, which runs here; give remote tasks "
                "a queue of their own"
            )
    for q in config.worker.queues:
        if q in remote:
            raise ConfigError(
                f"{config.source}: worker.queues: {q!r} holds remote tasks; the local pool "
                "cannot serve it"
            )
    return frozenset(remote)


def handler_kind(handler: HandlerConfig) -> str:
    """The ``kind`` word of a handler config (``python``, ``builtin``, ...)."""
    if isinstance(handler, PythonHandler):
        return "python"
    if isinstance(handler, BuiltinHandler):
        return "builtin"
    return type(handler).__struct_config__.tag  # type: ignore[attr-defined]
