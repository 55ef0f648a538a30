"""``/v1/schedules``: the cron schedules with their last and next firing;
trigger one now."""

from __future__ import annotations

from aiohttp import web

from tqd.api.app import json_response, services
from tqd.api.render import schedule_json, task_json
from tqd.errors import NotFound, ShuttingDown


async def list_schedules(request: web.Request) -> web.Response:
    """GET /v1/schedules → every configured schedule, by name."""
    svc = services(request)
    cron = svc.cron
    if cron is None or not cron.schedules:
        return json_response({"schedules": []})
    firings = await svc.storage.firings()
    now = svc.clock.now()
    out = []
    for name, s in sorted(cron.schedules.items()):
        definition = svc.catalog.require(s.task)
        out.append(schedule_json(
            s,
            s.queue or definition.queue,
            definition.priority if s.priority is None else s.priority,
            firings.get(name),
            s.spec.next_after(now),
        ))
    return json_response({"schedules": out})


async def trigger(request: web.Request) -> web.Response:
    """POST /v1/schedules/{name}/trigger → 201 with the task it enqueued (200
    with the task already there when the task name is unique and a twin is)."""
    svc = services(request)
    name = request.match_info["name"]
    if svc.draining:
        raise ShuttingDown("tqd is shutting down and takes no new tasks; try another instance")
    if svc.cron is None:
        raise NotFound(f"no schedule named {name!r} (schedules: none are configured)")
    stored, created = await svc.cron.trigger(name, svc.clock.now())
    return json_response(
        task_json(stored), status=201 if created else 200,
        headers={"Location": f"/v1/tasks/{stored.id}"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/schedules", list_schedules)
    app.router.add_post("/v1/schedules/{name}/trigger", trigger)
