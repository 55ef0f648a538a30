"""``GET /metrics``: the Prometheus text format (version 0.0.4).

Nothing here runs per task: the Meter (tqd.runtime.meter) and the HTTP
middleware below keep plain counters, turned into text only when Prometheus
scrapes. Queue depths are read from the store at scrape time, so on Redis
every process reports the whole queue (aggregate with ``max by (queue,
state)``, not ``sum``); task counters count the work of this process only
(``sum`` them across processes).

tqd's own series are written by :class:`Exposition`, which keeps the text of
each label set once (labels never change) and so writes a sample for about
the cost of one string concatenation: prometheus-client's generic
``generate_latest`` escapes and validates every label of every sample again
and took 130 ms for the 10,000 samples of 100 queues on this machine, far
from the 20 ms a scrape should take. prometheus-client still provides the
process metrics (``process_start_time_seconds``, CPU, memory, open files)
and is what the tests parse the output with.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest

from tqd import __version__
from tqd.errors import StorageUnavailable
from tqd.models import QueueInfo
from tqd.runtime.meter import COUNTER_NAMES, Histogram, Meter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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
    """Requests by route template, method and status, and their durations.

    The middleware below fills it with one dict lookup per request: entries
    are keyed by the aiohttp route object (one per route and method) and the
    status, and turned into template and method labels only at scrape time.
    """

    def __init__(self) -> None:
        #: (route object or (None, method), status) -> [count, duration histogram or None]
        self.entries: dict[tuple[Any, int], list[Any]] = {}

    def totals(self) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], Histogram]]:
        """Counts by (route template, method, status) and durations by (template, method)."""
        requests: dict[tuple[str, str, str], int] = {}
        durations: dict[tuple[str, str], Histogram] = {}
        for (route, status), (count, hist) in self.entries.items():
            if type(route) is tuple:
                template, method = "unmatched", route[1]
            else:
                template, method = route.resource.canonical, route.method
            key = (template, method, str(status))
            requests[key] = requests.get(key, 0) + count
            if hist is not None:
                total = durations.get((template, method))
                if total is None:
                    total = durations[(template, method)] = Histogram(HTTP_BOUNDS)
                total.counts = [a + b for a, b in zip(total.counts, hist.counts, strict=True)]
                total.sum += hist.sum
        return requests, durations


def http_metrics_middleware(meter: HttpMeter) -> Any:
    """Counts every request; the outermost middleware, so it sees the final status.

    The route label is the route's template (``/v1/tasks/{id}``), never the
    raw path, and an unknown method is "other", so no request can grow the
    label set. Written flat (about 1 µs a request): it runs on every enqueue.
    """
    clock = time.perf_counter
    entries = meter.entries
    bounds = HTTP_BOUNDS

    def entry_for(key: tuple[Any, int], timed: bool) -> list[Any]:
        entry = entries[key] = [0, Histogram(bounds) if timed else None]
        return entry

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
            route = request.match_info.route
            if route.resource is None:
                method = request.method
                key: tuple[Any, int] = ((None, method if method in _METHODS else "other"), status)
            else:
                key = (route, status)
            entry = entries.get(key) or entry_for(key, status != 101)
            entry[0] += 1
            hist = entry[1]
            if hist is not None:  # (not for a WebSocket: its time is the whole connection)
                elapsed = clock() - start
                hist.counts[bisect_left(bounds, elapsed)] += 1
                hist.sum += elapsed

    return middleware


# -- the text format ----------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Writes families of samples, keeping the text of each label set."""

    def __init__(self) -> None:
        self._labels: dict[tuple, str] = {}
        self._buckets: dict[tuple, list[str]] = {}

    def labels(self, names: Sequence[str], values: Sequence[Any]) -> str:
        """``{a="x",b="y"}`` for these label values (cached)."""
        key = (*names, *values)
        text = self._labels.get(key)
        if text is None:
            pairs = ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True))
            text = self._labels[key] = "{" + pairs + "}" if pairs else ""
        return text

    @staticmethod
    def head(out: list[str], name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")

    def histogram(
        self, out: list[str], name: str, names: Sequence[str], values: Sequence[Any],
        hist: Histogram,
    ) -> None:
        """The _bucket, _count and _sum samples of one histogram."""
        key = (name, *names, *values)
        prefixes = self._buckets.get(key)
        if prefixes is None:
            base = ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True))
            sep = "," if base else ""
            prefixes = self._buckets[key] = [
                f'{name}_bucket{{{base}{sep}le="{le}"}} '
                for le in [*(repr(float(b)) for b in hist.bounds), "+Inf"]
            ]
        total = 0
        for prefix, n in zip(prefixes, hist.counts, strict=True):
            total += n
            out.append(f"{prefix}{total}\n")
        labels = self.labels(names, values)
        out.append(f"{name}_count{labels} {total}\n{name}_sum{labels} {_number(hist.sum)}\n")


def write_tqd(ex: Exposition, out: list[str], meter: Meter, http: HttpMeter,
              queues: list[QueueInfo] | None) -> None:
    """tqd's own metrics (see the module docstring for what each means)."""
    qn = ("queue", "name")
    for i, kind in enumerate(COUNTER_NAMES):
        name = f"tqd_tasks_{kind}_total"
        ex.head(out, name, "counter", _COUNTER_HELP[kind])
        out.extend(f"{name}{ex.labels(qn, key)} {counts[i]}\n" for key, counts in meter.tasks.items())

    name = "tqd_task_latency_seconds"
    ex.head(out, name, "histogram",
            "Enqueue-to-start latency of tasks started by this process's workers.")
    for queue, hist in meter.latency.items():
        ex.histogram(out, name, ("queue",), (queue,), hist)
    name = "tqd_task_duration_seconds"
    ex.head(out, name, "histogram", "How long this process's workers ran tasks (start to outcome).")
    for key, hist in meter.duration.items():
        ex.histogram(out, name, qn, key, hist)

    ex.head(out, "tqd_lease_reclaims_total", "counter",
            "Leases of tasks running in this process that a supervisor took back because "
            "they expired (the handler was stopped).")
    out.append(f"tqd_lease_reclaims_total {meter.leases_lost}\n")
    ex.head(out, "tqd_storage_errors_total", "counter",
            "Store operations in this process that failed because the store was unavailable.")
    out.append(f"tqd_storage_errors_total {StorageUnavailable.raised}\n")

    ex.head(out, "tqd_queue_depth", "gauge", "Tasks per queue and state, read from the store.")
    qs = ("queue", "state")
    for info in queues or ():
        out.extend(f"tqd_queue_depth{ex.labels(qs, (info.name, state))} {n}\n"
                   for state, n in info.counts.items())
    ex.head(out, "tqd_queue_paused", "gauge", "1 while a queue is paused.")
    out.extend(f"tqd_queue_paused{ex.labels(('queue',), (info.name,))} {int(info.paused)}\n"
               for info in queues or ())
    ex.head(out, "tqd_storage_up", "gauge",
            "1 when the store answered the scrape's read of queue depths.")
    out.append(f"tqd_storage_up {0 if queues is None else 1}\n")

    requests, durations = http.totals()
    ex.head(out, "tqd_http_requests_total", "counter",
            "HTTP requests by route template, method and status.")
    rms = ("route", "method", "status")
    out.extend(f"tqd_http_requests_total{ex.labels(rms, key)} {n}\n" for key, n in requests.items())
    name = "tqd_http_request_duration_seconds"
    ex.head(out, name, "histogram",
            "Time to answer HTTP requests (WebSocket connections not included).")
    for key, hist in durations.items():
        ex.histogram(out, name, ("route", "method"), key, hist)

    ex.head(out, "tqd_build_info", "gauge", "The running tqd version.")
    out.append(f"tqd_build_info{ex.labels(('version',), (__version__,))} 1\n")


def service_samples(svc: Any) -> Iterable[tuple[str, str, str, float]]:
    """(name, type, help, value) of the parts of one process: pool, connections
    and event stream."""
    running = len(svc.pool.running) if svc.pool is not None else 0
    yield "tqd_tasks_running", "gauge", "Tasks running in this process now.", running
    limit = svc.connections
    if limit is not None:
        yield ("tqd_http_connections", "gauge",
               "Client connections open now (WebSocket included).", limit.open)
        yield ("tqd_http_connections_limit", "gauge",
               "Most client connections served at once ([api] max_connections, cut to the "
               "open-file limit).", limit.limit)
        yield ("tqd_http_connections_refused_total", "counter",
               "Connections turned away (503 too_many_connections) because the limit was "
               "reached.", limit.refused)
    hub = svc.events
    if hub is not None:
        yield ("tqd_events_clients", "gauge", "WebSocket clients of /v1/events now.",
               len(hub.clients))
        yield ("tqd_events_dropped_total", "counter",
               "Task messages left out for /v1/events clients that did not keep up.", hub.dropped)
        yield ("tqd_events_slow_closed_total", "counter",
               "/v1/events clients closed with 4008 because they did not read.", hub.closed_slow)


class Metrics:
    """What /metrics answers: tqd's metrics and the process metrics."""

    def __init__(self, meter: Meter, http: HttpMeter, extra: Any = None) -> None:
        self.meter = meter
        self.http = http
        #: () -> (name, type, help, value) of more single-value metrics
        self.extra = extra
        self._exposition = Exposition()
        self._process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._process)

    def render_text(self, queues: list[QueueInfo] | None) -> bytes:
        """The exposition text with these queue infos (None: the store did not answer)."""
        out: list[str] = []
        write_tqd(self._exposition, out, self.meter, self.http, queues)
        for name, kind, help_text, value in self.extra() if self.extra else ():
            Exposition.head(out, name, kind, help_text)
            out.append(f"{name} {_number(value)}\n")
        return "".join(out).encode() + generate_latest(self._process)

    async def render(self, storage: Any) -> bytes:
        """The exposition text, with queue depths read from ``storage`` now."""
        try:
            queues: list[QueueInfo] | None = await storage.queues()
        except StorageUnavailable:
            queues = None
        return self.render_text(queues)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics → the Prometheus text format."""
    from tqd.api.app import services

    svc = services(request)
    body = await svc.metrics.render(svc.storage)
    response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    if len(body) > 4096:
        # Prometheus asks for gzip; 100 queues are ~700 KB of text, ~10x less packed.
        response.enable_compression()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
