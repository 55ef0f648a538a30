"""The OpenAPI 3.1 document of the running app, built from code.

Paths and methods come from the aiohttp router, request bodies from the
msgspec structs the handlers decode with (schemas.py), response bodies from
contract.py, limits from the configuration, and each operation's description
from its handler's docstring. What only words can say (parameters, which
statuses an operation answers) is in :data:`OPERATIONS`, keyed by method and
path; a route missing there is marked ``x-undocumented`` (a test fails on
it), so the document cannot silently leave a route out.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from tqd import __version__
from tqd.api import contract
from tqd.api.auth import PUBLIC_ROUTES
from tqd.api.schemas import (
    BatchBody,
    CompleteBody,
    EnqueueBody,
    FailBody,
    HeartbeatBody,
    LeaseBody,
    ProgressBody,
    PurgeBody,
    QueuePatchBody,
    SettleBody,
)
from tqd.api.tasks import MAX_PAGE
from tqd.config import Config
from tqd.models import NAME_PATTERN, STATES
from tqd.runtime.catalog import Catalog

REF = "#/components/schemas/{name}"

_ERRORS = {
    400: "The request is malformed; the message names the field.",
    401: "No token, or one that matches none configured (`WWW-Authenticate: Bearer`).",
    403: "The token's scope is too low (the message names the scope needed), or a "
         "browser page of another origin acts on a tqd without tokens.",
    408: "The body did not arrive within `api.body_timeout`.",
    415: "The body is not declared as JSON (`Content-Type: application/json`).",
    404: "No such task, queue or route.",
    409: "The operation does not fit the task's state.",
    413: "The body is over `api.max_body_size`.",
    422: "The task name has no handler configured.",
    503: "The store is unavailable, tqd is shutting down, or (/, /assets) the dashboard "
         "is not built; try again.",
}


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: an empty value is as if the parameter were absent."""
    return {"anyOf": [schema, {"const": "", "description": "empty: as if absent"}]}


def _name_param(where: str, name: str, text: str) -> dict[str, Any]:
    schema = {"type": "string", "pattern": NAME_PATTERN}
    return {"name": name, "in": where, "required": where == "path", "description": text,
            "schema": schema if where == "path" else _or_empty(schema)}


@dataclass(frozen=True)
class Op:
    """What the router cannot tell about one operation."""

    summary: str
    tag: str
    #: status -> component name of the JSON body, or None for no body
    ok: dict[int, str | None]
    #: error statuses it may answer (bodies are ``Error``)
    errors: tuple[int, ...] = ()
    params: tuple[dict[str, Any], ...] = ()
    body: str | None = None
    #: status -> (media type, schema) for answers that are not JSON
    raw: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


TASK_ID = {"name": "id", "in": "path", "required": True,
           "description": "A task id (anything but letters and digits is a 400).",
           "schema": {"type": "string", "pattern": "^[0-9A-Za-z]{1,64}$"}}
QUEUE = _name_param("path", "queue", "A queue name.")
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Same as `idempotency_key` in the body (they must agree when both are given).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[\x21-\x7e]+$"},
}

OPERATIONS: dict[tuple[str, str], Op] = {
    ("GET", "/healthz"): Op("The process is alive", "health", {200: "Health"}),
    ("GET", "/readyz"): Op("The process can take work", "health", {200: "Ready", 503: "Ready"}),
    ("POST", "/v1/tasks"): Op(
        "Enqueue a task", "tasks", {201: "TaskOut", 200: "TaskOut"}, (400, 413, 422, 503),
        params=(IDEMPOTENCY_HEADER,), body="EnqueueBody",
        extra={"x-status-notes": "201: stored; 200: the idempotency key matched a stored task"},
    ),
    ("POST", "/v1/tasks/batch"): Op(
        "Enqueue several tasks, all or none", "tasks", {201: "TaskBatch"}, (400, 413, 422, 503),
        body="BatchBody",
    ),
    ("GET", "/v1/tasks"): Op(
        "List tasks, newest first", "tasks", {200: "TaskList"}, (400, 503),
        params=(
            {"name": "state", "in": "query", "schema": _or_empty({"enum": list(STATES)})},
            _name_param("query", "queue", "Only tasks of this queue."),
            _name_param("query", "name", "Only tasks of this name."),
            {"name": "limit", "in": "query",
             "schema": _or_empty({"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                  "default": 50})},
            {"name": "cursor", "in": "query", "description": "`next_cursor` of the previous page.",
             "schema": _or_empty({"type": "string", "minLength": 1})},
        ),
    ),
    ("GET", "/v1/tasks/{id}"): Op(
        "Get a task, optionally waiting for it to finish", "tasks", {200: "TaskOut"},
        (400, 404, 503), params=(TASK_ID, {
            "name": "wait", "in": "query",
            "description": "Seconds to wait for the task to finish (at most `api.max_wait`).",
            "schema": _or_empty({"type": "number", "minimum": 0})}),
    ),
    ("DELETE", "/v1/tasks/{id}"): Op(
        "Delete a task that is not processing", "tasks", {204: None}, (404, 409, 503),
        params=(TASK_ID,),
    ),
    ("POST", "/v1/tasks/{id}/cancel"): Op(
        "Cancel a pending, scheduled or processing task", "tasks", {200: "TaskOut"},
        (404, 409, 503), params=(TASK_ID,),
    ),
    ("POST", "/v1/tasks/{id}/retry"): Op(
        "Run a failed or cancelled task again", "tasks", {200: "TaskOut"}, (404, 409, 503),
        params=(TASK_ID,),
    ),
    ("GET", "/v1/queues"): Op("List queues with their counts", "queues", {200: "QueueList"}, (503,)),
    ("GET", "/v1/queues/{queue}"): Op(
        "Get a queue", "queues", {200: "QueueOut"}, (400, 404, 503), params=(QUEUE,)
    ),
    ("PATCH", "/v1/queues/{queue}"): Op(
        "Change a queue's limits or pause it", "queues", {200: "QueueOut"}, (400, 409, 413, 503),
        params=(QUEUE,), body="QueuePatchBody",
    ),
    ("POST", "/v1/queues/{queue}/pause"): Op(
        "Pause a queue: nothing more is leased from it", "queues", {200: "QueueOut"}, (400, 503),
        params=(QUEUE,),
    ),
    ("POST", "/v1/queues/{queue}/resume"): Op(
        "Resume a paused queue", "queues", {200: "QueueOut"}, (400, 503), params=(QUEUE,)
    ),
    ("POST", "/v1/queues/{queue}/redrive"): Op(
        "Put every failed task of a queue back to pending", "queues", {200: "QueueAffected"},
        (400, 404, 503), params=(QUEUE,),
    ),
    ("POST", "/v1/queues/{queue}/purge"): Op(
        "Delete every task of a queue in one state", "queues", {200: "QueueAffected"},
        (400, 404, 413, 503), params=(QUEUE,), body="PurgeBody",
    ),
    ("GET", "/v1/workers"): Op(
        "List the tqd processes sharing the store", "workers", {200: "WorkerList"}, (503,)
    ),
    ("GET", "/v1/stats"): Op(
        "Time series for charts", "observability", {200: "Stats"}, (400, 503),
        params=(
            {"name": "range", "in": "query",
             "schema": _or_empty({"enum": ["10m", "24h"], "default": "10m"}),
             "description": "10m: 600 per-second points; 24h: 1440 per-minute points."},
            _name_param("query", "queue", "Only this queue (default: every queue)."),
        ),
    ),
    ("GET", "/v1/events"): Op(
        "Live events (WebSocket)", "observability", {}, (400, 503),
        params=({"name": "queues", "in": "query",
                 "description": "Comma-separated queue names to follow (default: every queue).",
                 "schema": _or_empty({"type": "string",
                                      "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
                                                 r"(,[A-Za-z0-9][A-Za-z0-9._-]{0,127})*$"})},),
        raw={101: ("", {})},
        extra={"x-websocket-messages": {
            "server": [REF.format(name=c.__name__) for c in contract.EVENTS[:-1]],
            "client": [REF.format(name="EventSubscribe")],
        }},
    ),
    ("POST", "/v1/queues/{queue}/lease"): Op(
        "Lease tasks of a remote queue (pull workers)", "remote", {200: "LeasedTasks"},
        (400, 404, 413, 503), params=(QUEUE,), body="LeaseBody",
    ),
    ("POST", "/v1/tasks/{id}/heartbeat"): Op(
        "Keep a remote task's lease", "remote", {200: "HeartbeatOut"}, (400, 404, 409, 413, 503),
        params=(TASK_ID,), body="HeartbeatBody",
    ),
    ("POST", "/v1/tasks/{id}/complete"): Op(
        "Report a remote task completed", "remote", {200: "CompleteOut"},
        (400, 404, 409, 413, 503), params=(TASK_ID,), body="CompleteBody",
    ),
    ("POST", "/v1/tasks/{id}/fail"): Op(
        "Report a remote task's attempt failed", "remote", {200: "FailOut"},
        (400, 404, 409, 413, 503), params=(TASK_ID,), body="FailBody",
    ),
    ("POST", "/v1/tasks/settle"): Op(
        "Report several remote outcomes at once", "remote", {200: "SettleResults"},
        (400, 413, 503), body="SettleBody",
    ),
    ("POST", "/v1/tasks/{id}/progress"): Op(
        "Report a remote task's progress", "remote", {200: "ProgressNoted"},
        (400, 404, 409, 413, 503), params=(TASK_ID,), body="ProgressBody",
    ),
    ("GET", "/v1/schedules"): Op(
        "List cron schedules with their last and next firing", "schedules",
        {200: "ScheduleList"}, (503,),
    ),
    ("POST", "/v1/schedules/{name}/trigger"): Op(
        "Fire a schedule now (besides its instants)", "schedules",
        {201: "TaskOut", 200: "TaskOut"}, (400, 404, 503),
        params=(_name_param("path", "name", "A schedule name."),),
        extra={"x-status-notes": "201: enqueued; 200: a unique task's live twin was returned"},
    ),
    ("GET", "/metrics"): Op(
        "Prometheus metrics", "observability", {}, (),
        raw={200: ("text/plain", {"type": "string"})},
    ),
    ("GET", "/openapi.json"): Op(
        "This document", "docs", {}, (), raw={200: ("application/json", {"type": "object"})}
    ),
    ("GET", "/docs"): Op(
        "The API in a browser (Swagger UI)", "docs", {}, (),
        raw={200: ("text/html", {"type": "string"})},
    ),
    ("GET", "/"): Op(
        "The dashboard", "dashboard", {}, (503,), raw={200: ("text/html", {"type": "string"})}
    ),
    ("GET", "/assets/{name}"): Op(
        "Files of the dashboard", "dashboard", {}, (404, 503),
        params=({"name": "name", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$"}},),
        raw={200: ("*/*", {})},
    ),
    ("GET", "/docs/{file}"): Op(
        "Files of the /docs page", "docs", {}, (404,),
        params=({"name": "file", "in": "path", "required": True, "schema": {"type": "string"}},),
        raw={200: ("*/*", {})},
    ),
}


#: What a client can do next with the task an enqueue returned.
TASK_LINKS = {
    name: {"operationId": op, "parameters": {"id": "$response.body#/id"}}
    for name, op in (("get", "get_v1_tasks_id"), ("cancel", "post_v1_tasks_id_cancel"),
                     ("retry", "post_v1_tasks_id_retry"), ("delete", "delete_v1_tasks_id"))
}


def _components(config: Config) -> dict[str, Any]:
    kinds = [EnqueueBody, BatchBody, PurgeBody, QueuePatchBody, LeaseBody, HeartbeatBody, CompleteBody, FailBody,
             SettleBody, ProgressBody, *contract.RESPONSES, *contract.EVENTS]
    _, schemas = msgspec.json.schema_components(kinds, ref_template=REF)
    # What the structs cannot say: what this tqd is configured to run and its
    # limits, and that a task takes a delay or a run_at but not both.
    name = schemas["EnqueueBody"]["properties"]["name"]
    name["enum"] = Catalog(config).names()
    name["description"] = "A task name configured in this tqd (others answer 422)."
    schemas["BatchBody"]["properties"]["tasks"].update(minItems=1, maxItems=config.api.max_batch)
    schemas["QueuePatchBody"]["minProperties"] = 1
    schemas["EnqueueBody"]["not"] = {
        "required": ["delay", "run_at"],
        "properties": {"delay": {"type": "number"}, "run_at": {"type": "string"}},
    }
    return schemas


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=name)}}}


def _errors(op: Op, path: str, config: Config) -> list[int]:
    """The operation's own errors and those every route shares (tqd/api/auth.py,
    cors.py and limits.py): 401 and 403 unless public, 400 for a malformed id,
    408 and 415 for a body."""
    errors = set(op.errors)
    if path not in PUBLIC_ROUTES:
        errors.add(403)
        if config.tokens:
            errors.add(401)
    if "{id}" in path:
        errors.add(400)
    if op.body:
        errors.update((408, 415))
    return sorted(errors)


def _operation(op: Op, method: str, path: str, handler: Any, config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": f"{method.lower()}_{path.strip('/').replace('/', '_')}"
        .replace("{", "").replace("}", "").replace(".", "_"),
        "summary": op.summary,
        "tags": [op.tag],
    }
    doc = inspect.getdoc(handler)
    if doc:
        out["description"] = doc
    if op.params:
        out["parameters"] = params = copy.deepcopy(list(op.params))
        for p in params:
            if p["name"] == "wait":
                p["schema"]["anyOf"][0]["maximum"] = config.api.max_wait
            elif p["name"] == "name" and path.startswith("/v1/schedules/") and config.schedules:
                p["schema"]["enum"] = sorted(config.schedules)
                p["description"] = "A schedule configured in this tqd (others answer 404)."
            elif p["name"] == "file":
                from tqd.api.docs import FILES

                p["schema"]["enum"] = sorted(FILES)
    if op.body:
        out["requestBody"] = {"required": True, "content": _json(op.body)}
    responses: dict[str, Any] = {}
    for status, body in op.ok.items():
        responses[str(status)] = {"description": "OK" if body is None else body}
        if body is not None:
            responses[str(status)]["content"] = _json(body)
    for status, (media, schema) in op.raw.items():
        responses[str(status)] = {"description": "Switching to the WebSocket protocol"
                                  if status == 101 else "OK"}
        if media:
            responses[str(status)]["content"] = {media: {"schema": schema}}
    for status in _errors(op, path, config):
        responses[str(status)] = {"description": _ERRORS[status], "content": _json("Error")}
    if ("POST", "/v1/tasks") == (method, path):
        responses["201"]["headers"] = {
            "Location": {"description": "The task's URL.", "schema": {"type": "string"}}
        }
        for status in ("200", "201"):
            responses[status]["links"] = TASK_LINKS
    out["responses"] = responses
    if config.tokens and path in PUBLIC_ROUTES:
        out["security"] = []  # no token needed
    out.update(op.extra)
    return out


def build_document(app: web.Application, config: Config) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app`` (every route it serves)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        method = route.method
        resource = route.resource
        if method == "HEAD" or resource is None:
            continue  # aiohttp's automatic HEAD twin of each GET
        path = resource.canonical
        op = OPERATIONS.get((method, path))
        if op is None:
            entry: dict[str, Any] = {
                "summary": "undocumented", "x-undocumented": True,
                "responses": {"default": {"description": "not described yet"}},
            }
        else:
            entry = _operation(op, method, path, route.handler, config)
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tqd",
            "version": __version__,
            "description": "A task queue in one process. Errors are always "
                           '`{"error": {"code", "message"}}`.',
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": _components(config), "securitySchemes": SECURITY_SCHEMES},
        # With tokens every operation needs one unless it says otherwise.
        **({"security": [{"bearer": []}]} if config.tokens else {}),
    }


SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token of `[[tokens]]` in tqd.toml, of scope read (GET), write "
                       "(enqueue, cancel, retry, remote workers) or admin (everything). "
                       "A WebSocket may send it as the sub-protocols `tqd, bearer.<token>`.",
    }
}
