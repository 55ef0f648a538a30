"""``/v1/queues``: counts per state and limits, pause, resume, change settings
(PATCH), purge, redrive."""

from __future__ import annotations

import msgspec
from aiohttp import web

from tqd.api.app import json_response, read_body, services
from tqd.api.render import queue_json
from tqd.api.schemas import PurgeBody, QueuePatchBody, decode
from tqd.errors import BadRequest, LimitsChanged, NotFound
from tqd.models import NO_LIMITS, QueueLimits, valid_name

#: The fields of PATCH /v1/queues/{queue} that are limits.
LIMIT_FIELDS = QueueLimits.__struct_fields__
#: How often PATCH reads, merges and writes again when another writer changed
#: the limits in between; only a steady stream of concurrent edits of one
#: queue exhausts it (then 409 limits_changed).
PATCH_ATTEMPTS = 20


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


def merged_limits(stored: QueueLimits, body: QueuePatchBody) -> QueueLimits | None:
    """``stored`` with the limits ``body`` gives replaced (None: it gives none).

    A burst needs a rate limit: giving ``rate_burst`` without one is a
    BadRequest, while removing the rate limit also removes a stored burst.
    """
    given = {
        f: getattr(body, f) for f in LIMIT_FIELDS if getattr(body, f) is not msgspec.UNSET
    }
    if not given:
        return None
    if "rate_interval" in given and given["rate_interval"] is None:
        given["rate_interval"] = NO_LIMITS.rate_interval
    limits = msgspec.structs.replace(stored, **given)
    if limits.rate_burst is not None and limits.rate_limit is None:
        if "rate_burst" in given:
            raise BadRequest("rate_burst: needs a rate_limit (stored or given with it)")
        limits = msgspec.structs.replace(limits, rate_burst=None)
    return limits


async def patch_queue(request: web.Request) -> web.Response:
    """PATCH /v1/queues/{queue}: change any of ``paused``, ``concurrency``,
    ``rate_limit``, ``rate_interval``, ``rate_burst``, ``group_concurrency``.

    Fields left out keep their stored values; null removes a limit. The
    limits hold across every process sharing the store from their next
    lease; a changed rate limit starts with a full bucket. A queue never
    named is created. The change lasts (restarts included) until the
    config file's ``[queues.NAME]`` settings change. Answers the queue.
    Concurrent PATCHes of one queue each keep the others' fields (the merge
    is written by compare-and-set and redone when it lost the race).
    """
    svc = services(request)
    name = _queue_name(request)
    body = decode(await read_body(request), QueuePatchBody)
    if all(getattr(body, f) is msgspec.UNSET for f in body.__struct_fields__):
        raise BadRequest(
            "body: give at least one of " + ", ".join(body.__struct_fields__)
        )
    for attempt in range(PATCH_ATTEMPTS):
        try:
            stored = (await svc.storage.queue(name)).limits
        except NotFound:
            stored = NO_LIMITS
        limits = merged_limits(stored, body)
        if limits is None:
            break
        try:
            # Written only if nobody changed the limits since they were read,
            # so a concurrent PATCH of another field is never undone.
            info = await svc.storage.set_limits(name, limits, svc.clock.now(), expected=stored)
            break
        except LimitsChanged:
            if attempt == PATCH_ATTEMPTS - 1:
                raise
    if body.paused is not msgspec.UNSET:
        info = await svc.storage.set_paused(name, body.paused)
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
    app.router.add_patch("/v1/queues/{queue}", patch_queue)
    app.router.add_post("/v1/queues/{queue}/pause", pause)
    app.router.add_post("/v1/queues/{queue}/resume", resume)
    app.router.add_post("/v1/queues/{queue}/redrive", redrive)
    app.router.add_post("/v1/queues/{queue}/purge", purge)
