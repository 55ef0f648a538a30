"""``/v1/workers``: the tqd processes sharing the store."""

from __future__ import annotations

from aiohttp import web

from tqd.api.app import json_response, services
from tqd.api.render import worker_json


async def list_workers(request: web.Request) -> web.Response:
    """GET /v1/workers → every live process (on SQLite: this one)."""
    svc = services(request)
    workers = await svc.storage.workers(svc.clock.now())
    return json_response({"workers": [worker_json(w) for w in workers]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/workers", list_workers)
