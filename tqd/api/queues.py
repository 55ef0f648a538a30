"""``/v1/queues``: counts per state, pause, resume, purge, redrive."""

from __future__ import annotations

from aiohttp import web

from tqd.api.app import json_response, read_body, services
from tqd.api.render import queue_json
from tqd.api.schemas import PurgeBody, decode
from tqd.errors import BadRequest
from tqd.models import valid_name


def _queue_name(request: web.Request) -> str:
    name = request.match_info["queue"]
    if not valid_name(name):
        raise BadRequest(
            "queue: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


async def list_queues(request: web.Request) -> web.Response:
    """GET /v1/queues → every known queue with its counts."""
    queues = await services(request).storage.queues()
    return json_response({"queues": [queue_json(q) for q in queues]})


async def get_queue(request: web.Request) -> web.Response:
    """GET /v1/queues/{queue}; 404 for a queue never named."""
    info = await services(request).storage.queue(_queue_name(request))
    return json_response(queue_json(info))


async def pause(request: web.Request) -> web.Response:
    """POST /v1/queues/{queue}/pause: lease nothing more from it."""
    info = await services(request).storage.set_paused(_queue_name(request), True)
    return json_response(queue_json(info))


async def resume(request: web.Request) -> web.Response:
    """POST /v1/queues/{queue}/resume."""
    info = await services(request).storage.set_paused(_queue_name(request), False)
    return json_response(queue_json(info))


async def redrive(request: web.Request) -> web.Response:
    """POST /v1/queues/{queue}/redrive: every failed task back to pending."""
    svc = services(request)
    name = _queue_name(request)
    await svc.storage.queue(name)
    moved = await svc.storage.redrive(name, svc.clock.now())
    info = await svc.storage.queue(name)
    return json_response({**queue_json(info), "affected": moved})


async def purge(request: web.Request) -> web.Response:
    """POST /v1/queues/{queue}/purge {"state": ...}: delete its tasks in that state."""
    svc = services(request)
    name = _queue_name(request)
    body = decode(await read_body(request), PurgeBody)
    await svc.storage.queue(name)
    removed = await svc.storage.purge(name, body.state)
    info = await svc.storage.queue(name)
    return json_response({**queue_json(info), "affected": removed})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/queues", list_queues)
    app.router.add_get("/v1/queues/{queue}", get_queue)
    app.router.add_post("/v1/queues/{queue}/pause", pause)
    app.router.add_post("/v1/queues/{queue}/resume", resume)
    app.router.add_post("/v1/queues/{queue}/redrive", redrive)
    app.router.add_post("/v1/queues/{queue}/purge", purge)
