"""``POST /v1/tasks/{id}/progress``: a remote worker reports how far it got.

The report names the lease token the worker holds; it is written with the
other reports of the moment in one batch (see tqd/runtime/progress.py) and
the request answers once it is: 200, or 409 ``stale_lease`` when the token
is no longer the task's (nothing is written), or 404 for no such task.
"""

from __future__ import annotations

from aiohttp import web

from tqd.api.app import json_response, not_found_task, read_body, services
from tqd.api.schemas import ProgressBody, decode
from tqd.errors import StaleLease
from tqd.models import ProgressReport


async def report_progress(request: web.Request) -> web.Response:
    """POST /v1/tasks/{id}/progress {"token", "progress", "message"} → 200
    ``{"id", "progress": {"fraction", "message"}}``; 409 when the token is stale."""
    svc = services(request)
    task_id = request.match_info["id"]
    body = decode(await read_body(request), ProgressBody)
    if svc.progress is not None:
        stored = await svc.progress.submit(task_id, body.token, body.progress, body.message)
    else:
        report = ProgressReport(task_id, body.token, body.progress, body.message, svc.clock.now())
        [stored] = await svc.storage.report_progress([report])
    if not stored:
        if await svc.storage.get(task_id) is None:
            raise not_found_task(task_id)
        raise StaleLease(
            f"task {task_id}: the lease token is not current (the lease expired and was "
            "taken back, the task was cancelled or settled, or another worker holds it)"
        )
    return json_response(
        {"id": task_id, "progress": {"fraction": body.progress, "message": body.message}}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/tasks/{id}/progress", report_progress)
