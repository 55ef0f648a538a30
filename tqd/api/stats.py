"""``GET /v1/stats``: time series of task counts and latency for charts.

``?range=10m`` gives 600 per-second points, ``?range=24h`` 1440 per-minute
points, ending with the bucket that holds the current time (still filling:
every process adds its counts once a second). ``&queue=Q`` narrows to one
queue. Points with nothing recorded are zeros with null latencies. Latency
percentiles come from log-spaced histograms summed over every process, so
they are within about ±9% of the exact values (see tqd.histogram).
"""

from __future__ import annotations

from aiohttp import web

from tqd.api.app import json_response, services
from tqd.errors import BadRequest
from tqd.histogram import percentiles
from tqd.models import ALL_QUEUES, valid_name

#: range -> (seconds per point, number of points)
RANGES: dict[str, tuple[int, int]] = {"10m": (1, 600), "24h": (60, 1440)}


async def get_stats(request: web.Request) -> web.Response:
    """GET /v1/stats?range=10m|24h[&queue=Q]."""
    svc = services(request)
    # An empty value is as if absent, as everywhere in the API.
    rng = request.query.get("range") or "10m"
    if rng not in RANGES:
        raise BadRequest(f"range: must be one of {', '.join(RANGES)}")
    queue = request.query.get("queue") or None
    if queue is not None and not valid_name(queue):
        raise BadRequest(
            "queue: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    step, points = RANGES[rng]
    now = int(svc.clock.now())
    end = now - now % step
    start = end - (points - 1) * step
    found = {b.t: b for b in await svc.storage.stats(step, start, end, queue or ALL_QUEUES)}
    series = []
    for t in range(start, end + 1, step):
        b = found.get(t)
        if b is None:
            series.append({"t": t, "enqueued": 0, "completed": 0, "failed": 0,
                           "latency_p50_ms": None, "latency_p99_ms": None})
            continue
        p50, p99 = percentiles(b.latency, (0.5, 0.99))
        series.append({"t": t, "enqueued": b.enqueued, "completed": b.completed,
                       "failed": b.failed, "latency_p50_ms": p50, "latency_p99_ms": p99})
    return json_response({"range": rng, "step": step, "queue": queue, "series": series})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/stats", get_stats)
