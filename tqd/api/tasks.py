"""``/v1/tasks``: enqueue one or a batch, get (and wait), list, cancel, retry, delete."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tqd.api.app import (
    json_response,
    not_found_task,
    query_float,
    query_int,
    read_body,
    services,
)
from tqd.api.limits import check_payload_depth
from tqd.api.render import task_json
from tqd.api.schemas import MAX_SECONDS, BatchBody, EnqueueBody, decode, encode_payload
from tqd.errors import BadRequest, ShuttingDown, UnknownTask
from tqd.models import FINISHED_STATES, valid_name
from tqd.runtime.catalog import NewTask

MAX_PAGE = 1000


def _new_task(body: EnqueueBody, where: str, header_key: str | None, now: float) -> NewTask:
    if not valid_name(body.name):
        raise BadRequest(f"{where}name: not a valid task name")
    if body.queue is not None and not valid_name(body.queue):
        raise BadRequest(
            f"{where}queue: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if body.group is not None and not valid_name(body.group):
        raise BadRequest(
            f"{where}group: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if body.delay is not None and body.run_at is not None:
        raise BadRequest(f"{where}delay, {where}run_at: give one or the other, not both")
    key = body.idempotency_key
    if header_key is not None:
        if key is not None and key != header_key:
            raise BadRequest(f"{where}idempotency_key: differs from the Idempotency-Key header")
        key = header_key
    run_at = None
    if body.delay is not None:
        run_at = now + body.delay
    elif body.run_at is not None:
        run_at = body.run_at.timestamp()
        if run_at > now + MAX_SECONDS:
            raise BadRequest(f"{where}run_at: at most {MAX_SECONDS / 86400 / 365:g} years ahead")
    return NewTask(
        name=body.name,
        payload=encode_payload(body.payload, "payload", where),
        queue=body.queue,
        priority=body.priority,
        run_at=run_at,
        max_attempts=body.max_attempts,
        timeout=body.timeout,
        idempotency_key=key,
        unique_key=body.unique_key,
        group=body.group,
    )


def _header_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all("!" <= ch <= "~" for ch in key):
        raise BadRequest("Idempotency-Key: 1 to 255 visible ASCII characters")
    return key


def _accepting(request: web.Request) -> None:
    if services(request).draining:
        raise ShuttingDown("tqd is shutting down and takes no new tasks; try another instance")


async def enqueue(request: web.Request) -> web.Response:
    """POST /v1/tasks → 201 (created) or 200 (idempotency key matched)."""
    _accepting(request)
    svc = services(request)
    raw = await read_body(request)
    body = decode(raw, EnqueueBody, svc.config.api.max_depth)
    check_payload_depth(raw, [("payload", body.payload)], svc.config.api.max_depth)
    now = svc.clock.now()
    task = svc.catalog.build(_new_task(body, "", _header_key(request), now), now)
    (stored, created), = await svc.storage.enqueue([task])
    return json_response(
        task_json(stored),
        status=201 if created else 200,
        headers={"Location": f"/v1/tasks/{stored.id}"},
    )


async def enqueue_batch(request: web.Request) -> web.Response:
    """POST /v1/tasks/batch → 201 with every task, stored all or none."""
    _accepting(request)
    svc = services(request)
    raw = await read_body(request)
    body = decode(raw, BatchBody, svc.config.api.max_depth)
    limit = svc.config.api.max_batch
    if not body.tasks:
        raise BadRequest("tasks: at least one task is required")
    if len(body.tasks) > limit:
        raise BadRequest(f"tasks: {len(body.tasks)} tasks is over the batch limit of {limit}")
    check_payload_depth(
        raw,
        ((f"tasks[{i}].payload", item.payload) for i, item in enumerate(body.tasks)),
        svc.config.api.max_depth,
    )
    now = svc.clock.now()
    built = []
    for i, item in enumerate(body.tasks):
        where = f"tasks[{i}]."
        try:
            built.append(svc.catalog.build(_new_task(item, where, None, now), now))
        except UnknownTask as err:
            raise UnknownTask(f"{where}{err.message}") from None
        except BadRequest as err:
            if err.message.startswith(where):
                raise
            raise BadRequest(f"{where}{err.message}") from None
    results = await svc.storage.enqueue(built)
    return json_response({"tasks": [task_json(r.task) for r in results]}, status=201)


async def get_task(request: web.Request) -> web.Response:
    """GET /v1/tasks/{id}[?wait=S]: the task, once finished or when the wait ends."""
    svc = services(request)
    task_id = request.match_info["id"]
    wait = query_float(request, "wait", 0.0, svc.config.api.max_wait)
    task = await svc.storage.get(task_id)
    if task is None:
        raise not_found_task(task_id)
    if wait and task.state not in FINISHED_STATES:
        fut = svc.waiters.watch(task_id)
        try:
            # Read again after watching: a change between the first read and
            # the watch would otherwise be missed.
            task = await svc.storage.get(task_id)
            if task is not None and task.state not in FINISHED_STATES:
                try:
                    await asyncio.wait_for(asyncio.shield(fut), timeout=wait)
                except TimeoutError:
                    pass
                task = await svc.storage.get(task_id)
        finally:
            svc.waiters.forget(task_id, fut)
        if task is None:
            raise not_found_task(task_id)
    return json_response(task_json(task))


async def list_tasks(request: web.Request) -> web.Response:
    """GET /v1/tasks?state=&queue=&name=&limit=&cursor= → newest first."""
    svc = services(request)
    q = request.query
    for field in ("queue", "name"):  # (an empty value means no filter)
        value = q.get(field)
        if value and not valid_name(value):
            raise BadRequest(f"{field}: not a valid {field} name")
    page = await svc.storage.list(
        state=q.get("state") or None,
        queue=q.get("queue") or None,
        name=q.get("name") or None,
        limit=query_int(request, "limit", 50, 1, MAX_PAGE),
        cursor=q.get("cursor") or None,
    )
    return json_response({"tasks": [task_json(t) for t in page.tasks], "next_cursor": page.next_cursor})


async def cancel_task(request: web.Request) -> web.Response:
    """POST /v1/tasks/{id}/cancel → 200 with the cancelled task."""
    svc = services(request)
    task = await svc.storage.cancel(request.match_info["id"], svc.clock.now())
    return json_response(task_json(task))


async def retry_task(request: web.Request) -> web.Response:
    """POST /v1/tasks/{id}/retry → 200 with the task, pending again."""
    svc = services(request)
    task = await svc.storage.retry(request.match_info["id"], svc.clock.now())
    return json_response(task_json(task))


async def delete_task(request: web.Request) -> web.Response:
    """DELETE /v1/tasks/{id} → 204; 409 while processing."""
    await services(request).storage.delete(request.match_info["id"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/tasks", enqueue)
    app.router.add_post("/v1/tasks/batch", enqueue_batch)
    app.router.add_get("/v1/tasks", list_tasks)
    app.router.add_get("/v1/tasks/{id}", get_task)
    app.router.add_delete("/v1/tasks/{id}", delete_task)
    app.router.add_post("/v1/tasks/{id}/cancel", cancel_task)
    app.router.add_post("/v1/tasks/{id}/retry", retry_task)
