"""``GET /metrics``: Prometheus text format, with prometheus-client.

Nothing here runs per task: the Meter (tqd.runtime.meter) and the HTTP
middleware below keep plain counters, and a custom collector turns them
into metric families only when Prometheus scrapes. Queue depths are read
from the store at scrape time, so on Redis every process reports the whole
queue (use ``max by (queue, state)`` across processes, not ``sum``); task
counters count the work of this process only (``sum`` them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from tqd import __version__
from tqd.errors import StorageUnavailable
from tqd.models import QueueInfo
from tqd.runtime.meter import COUNTER_NAMES, Histogram, Meter

#: Bounds (seconds) of tqd_http_request_duration_seconds.
HTTP_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
               5.0, 10.0, 30.0, 60.0)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

_COUNTER_HELP = {
    "enqueued": "Tasks this process enqueued (idempotent repeats not counted).",
    "completed": "Tasks this process's workers completed.",
    "failed": "Tasks that failed for good in this process (no attempt left, not "
              "retryable, or lost with their last attempt).",
    "retried": "Failed attempts in this process that were scheduled to run again.",
    "reclaimed": "Tasks this process's supervisor took back after their lease expired.",
}


class HttpMeter:
    """Requests by route template, method and status, and their durations."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[tuple[str, str], Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float | None) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if seconds is not None:
            hist = self.durations.get((route, method))
            if hist is None:
                hist = self.durations[(route, method)] = Histogram(HTTP_BOUNDS)
            hist.observe(seconds)


def route_of(request: web.Request) -> str:
    """The route template of a request (``/v1/tasks/{id}``), never the raw path,
    so an attacker cannot grow the label set."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def http_metrics_middleware(meter: HttpMeter) -> Any:
    """Counts every request; the outermost middleware, so it sees the final status."""
    clock = time.perf_counter

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        start = clock()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            method = request.method if request.method in _METHODS else "other"
            # A WebSocket's "duration" is its whole connection: not a request time.
            seconds = None if status == 101 else clock() - start
            meter.observe(route_of(request), method, status, seconds)

    return middleware


def _histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    buckets = []
    total = 0
    for bound, n in zip(hist.bounds, hist.counts, strict=False):
        total += n
        buckets.append((repr(float(bound)), total))
    total += hist.counts[-1]
    buckets.append(("+Inf", total))
    family.add_metric(labels, buckets, hist.sum)


class TqdCollector(Collector):
    """Builds tqd's metric families from the meters at scrape time."""

    def __init__(self, meter: Meter, http: HttpMeter, extra: Any = None) -> None:
        self.meter = meter
        self.http = http
        #: queue infos read from the store just before the scrape (None: unreadable)
        self.queues: list[QueueInfo] | None = None
        #: () -> more metric families (running tasks, event clients...)
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        m = self.meter
        families = [
            CounterMetricFamily(f"tqd_tasks_{name}", _COUNTER_HELP[name], labels=["queue", "name"])
            for name in COUNTER_NAMES
        ]
        for (queue, name), counts in m.tasks.items():
            for family, n in zip(families, counts, strict=True):
                family.add_metric([queue, name], n)
        yield from families

        latency = HistogramMetricFamily(
            "tqd_task_latency_seconds",
            "Enqueue-to-start latency of tasks started by this process's workers.",
            labels=["queue"],
        )
        for queue, hist in m.latency.items():
            _histogram(latency, [queue], hist)
        yield latency
        duration = HistogramMetricFamily(
            "tqd_task_duration_seconds",
            "How long this process's workers ran tasks (start to outcome).",
            labels=["queue", "name"],
        )
        for (queue, name), hist in m.duration.items():
            _histogram(duration, [queue, name], hist)
        yield duration
        yield CounterMetricFamily(
            "tqd_lease_reclaims",
            "Leases of tasks running in this process that a supervisor took back "
            "because they expired (the handler was stopped).",
            value=m.leases_lost,
        )
        yield CounterMetricFamily(
            "tqd_storage_errors",
            "Store operations in this process that failed because the store was unavailable.",
            value=StorageUnavailable.raised,
        )

        depth = GaugeMetricFamily(
            "tqd_queue_depth", "Tasks per queue and state, read from the store.",
            labels=["queue", "state"],
        )
        paused = GaugeMetricFamily(
            "tqd_queue_paused", "1 while a queue is paused.", labels=["queue"]
        )
        for info in self.queues or ():
            for state, n in info.counts.items():
                depth.add_metric([info.name, state], n)
            paused.add_metric([info.name], 1 if info.paused else 0)
        yield depth
        yield paused
        yield GaugeMetricFamily(
            "tqd_storage_up", "1 when the store answered the scrape's read of queue depths.",
            value=0 if self.queues is None else 1,
        )

        requests = CounterMetricFamily(
            "tqd_http_requests", "HTTP requests by route template, method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), n in self.http.requests.items():
            requests.add_metric([route, method, str(status)], n)
        yield requests
        durations = HistogramMetricFamily(
            "tqd_http_request_duration_seconds",
            "Time to answer HTTP requests (WebSocket connections not included).",
            labels=["route", "method"],
        )
        for (route, method), hist in self.http.durations.items():
            _histogram(durations, [route, method], hist)
        yield durations

        info = GaugeMetricFamily("tqd_build_info", "The running tqd version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        if self.extra is not None:
            yield from self.extra()


def service_families(svc: Any) -> Iterator[Metric]:
    """Metrics of the parts of one process: its pool and its event stream."""
    running = len(svc.pool.running) if svc.pool is not None else 0
    yield GaugeMetricFamily("tqd_tasks_running", "Tasks running in this process now.",
                            value=running)
    hub = svc.events
    if hub is not None:
        yield GaugeMetricFamily("tqd_events_clients", "WebSocket clients of /v1/events now.",
                                value=len(hub.clients))
        yield CounterMetricFamily(
            "tqd_events_dropped",
            "Task messages left out for /v1/events clients that did not keep up.",
            value=hub.dropped,
        )
        yield CounterMetricFamily(
            "tqd_events_slow_closed",
            "/v1/events clients closed with 4008 because they did not read.",
            value=hub.closed_slow,
        )


class Metrics:
    """The registry behind /metrics: tqd's collector and the process collector
    (process_start_time_seconds, CPU, memory, open files)."""

    def __init__(self, meter: Meter, http: HttpMeter, extra: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = TqdCollector(meter, http, extra)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)

    async def render(self, storage: Any) -> bytes:
        """The exposition text, with queue depths read from ``storage`` now."""
        try:
            self.collector.queues = await storage.queues()
        except StorageUnavailable:
            self.collector.queues = None
        return generate_latest(self.registry)


CONTENT_TYPE = CONTENT_TYPE_LATEST


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics → the Prometheus text format."""
    from tqd.api.app import services

    svc = services(request)
    body = await svc.metrics.render(svc.storage)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
