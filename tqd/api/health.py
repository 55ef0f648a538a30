"""``/healthz`` (the process lives) and ``/readyz`` (it can take work)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tqd.api.app import json_response, services
from tqd.errors import StorageUnavailable


async def healthz(request: web.Request) -> web.Response:
    """200 while the process runs; needs nothing else."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when the store answers within 2 s and the daemon is not draining; else 503."""
    svc = services(request)
    if svc.draining:
        return json_response({"status": "draining"}, status=503)
    try:
        await asyncio.wait_for(svc.storage.ping(), timeout=2.0)
    except (StorageUnavailable, TimeoutError) as err:
        reason = getattr(err, "message", "the store did not answer within 2s")
        return json_response({"status": "unavailable", "reason": reason}, status=503)
    return json_response({"status": "ready", "storage": svc.storage.kind})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
