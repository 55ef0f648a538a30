"""``create_app()``: the aiohttp application with its routes and middlewares.

What the handlers need (store, catalog, clock, ...) is one ``Services``
object under an AppKey, built by the daemon (or by a test). Every error
leaves as ``{"error": {"code", "message"}}``; a 5xx is logged as one line
with the exception's type and message, its traceback only at DEBUG; the 503s
of an unavailable store are throttled (one line as they begin, then one a
minute), those of a draining or full process are not failures.
Every request is counted for /metrics by route template, method and status.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tqd.api.limits import check_content_type
from tqd.api.waiters import Waiters
from tqd.clock import Clock
from tqd.config import Config
from tqd.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ShuttingDown,
    StorageUnavailable,
    TqdError,
)
from tqd.logs import Throttle, log_failure
from tqd.runtime.catalog import Catalog
from tqd.runtime.cron import Cron
from tqd.runtime.meter import Meter
from tqd.runtime.pool import WorkerPool
from tqd.runtime.progress import ProgressWriter
from tqd.storage.base import Storage

if TYPE_CHECKING:
    from tqd.api.connections import ConnectionLimit
    from tqd.api.events import EventHub
    from tqd.api.metrics import HttpMeter, Metrics

log = logging.getLogger("tqd.api")


@dataclass
class Services:
    """Everything the API handlers use, built once by the composition root."""

    storage: Storage
    catalog: Catalog
    config: Config
    clock: Clock
    pool: WorkerPool | None = None
    #: The cron role (schedules); None: no schedules are served.
    cron: Cron | None = None
    #: Writes remote workers' progress reports; None: written one by one.
    progress: ProgressWriter | None = None
    waiters: Waiters = field(default_factory=Waiters)
    #: Set when the daemon drains: enqueues and /readyz answer 503.
    draining: bool = False
    #: This process's task counters (the daemon feeds it; create_app makes
    #: one when none is given).
    meter: Meter | None = None
    #: The limit on open connections (the daemon makes it; None: no limit,
    #: as under a test server).
    connections: ConnectionLimit | None = None
    #: Made by create_app: request counters, /metrics, the /v1/events hub.
    http_meter: HttpMeter | None = None
    metrics: Metrics | None = None
    events: EventHub | None = None


SERVICES = web.AppKey("services", Services)
#: Logs the 503s of an unavailable store (see errors_middleware).
OUTAGE_LOG = web.AppKey("outage_log", Throttle)


def services(request: web.Request) -> Services:
    """The Services of the app serving ``request``."""
    return request.app[SERVICES]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def error_response(err: TqdError) -> web.Response:
    return json_response(err.to_json(), status=err.status)


async def read_body(request: web.Request) -> bytes:
    """The request body, refused (413) before it is read when it is too large,
    (415) when it is not declared JSON, (408) when it arrives too slowly."""
    api = request.app[SERVICES].config.api
    limit = api.max_body_size
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"body: {length} bytes is over the limit of {limit} bytes")
    if request.body_exists:
        check_content_type(request)
    try:
        if request.content.is_eof():
            # The whole body came with the head (nearly every API call): the
            # read cannot wait, so it needs no timer (a timer costs more than
            # the read).
            return await request.read()
        async with asyncio.timeout(api.body_timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body: over the limit of {limit} bytes") from None
    except TimeoutError:
        raise RequestTimeout(
            f"body: not received within {api.body_timeout:g}s ([api] body_timeout)"
        ) from None


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
#: 503s that are decisions, not failures: logged without a traceback.
_REFUSALS = frozenset({"too_many_clients"})


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn every failure into the JSON error shape; log 5xx as one line each
    (tracebacks at DEBUG), the 503s of an unavailable store throttled."""
    try:
        return await handler(request)
    except ShuttingDown as err:
        # Expected while draining; the client is told to go elsewhere.
        log.debug("%s %s refused: %s", request.method, request.path, err.message)
        return error_response(err)
    except TqdError as err:
        if err.status >= 500:
            if isinstance(err, StorageUnavailable):
                _log_outage(request, err)
            elif err.code in _REFUSALS:
                log.info("%s %s refused: %s", request.method, request.path, err.message)
            else:
                log_failure(log, "%s %s answered %d", request.method, request.path, err.status,
                            exc=err)
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else f"no route for {request.method} {request.path}"
        allow = exc.headers.get("Allow")
        return json_response({"error": {"code": code, "message": message}}, status=exc.status,
                             headers={"Allow": allow} if allow is not None else None)
    except Exception:
        log_failure(log, "%s %s failed", request.method, request.path)
        return json_response(
            {"error": {"code": "internal", "message": "internal error; see the tqd log"}}, status=500
        )


def _log_outage(request: web.Request, err: StorageUnavailable) -> None:
    """Log a 503 of an unavailable store through the app's Throttle.

    Throttled rather than once per outage: the API cannot tell when the
    store is back (a request that does not touch it succeeds all along; the
    Redis backend logs its own "answers again", SQLite has no probe), and
    what an operator wants from it is that clients are being turned away,
    why, since when and how many, in a log that stays a line a minute
    however many requests arrive. The cause is the driver's exception the
    backend translated (ConnectionError, TimeoutError...), when there was one.
    """
    cause = err.__cause__ or err.__context__ or err
    request.app[OUTAGE_LOG].log("%s %s answered 503, the store is unavailable (%s)",
                                request.method, request.path,
                                f"{type(cause).__name__}: {err.message}")


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; BadRequest names it."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}")
    return value


def query_float(request: web.Request, name: str, low: float, high: float) -> float | None:
    """A number query parameter within [low, high], or None when absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected a number, got {raw!r}") from None
    if not low <= value <= high:  # also refuses NaN
        raise BadRequest(f"{name}: must be between {low:g} and {high:g}")
    return value


def create_app(svc: Services) -> web.Application:
    """The aiohttp application for ``svc``: every route under /v1/, health,
    metrics, the event stream, the API documents and the dashboard at /."""
    from tqd.api import (
        dashboard,
        docs,
        events,
        health,
        metrics,
        progress,
        queues,
        remote,
        schedules,
        stats,
        tasks,
        workers,
    )

    if svc.meter is None:
        svc.meter = Meter(svc.clock)
        svc.storage.add_listener(svc.meter.on_changes)
    svc.http_meter = metrics.HttpMeter()
    ev = svc.config.events
    svc.events = events.EventHub(svc.storage, svc.clock, events.EventSettings(
        buffer=ev.buffer, interval=ev.interval, stall_timeout=ev.stall_timeout,
        max_clients=ev.max_clients,
    ))
    svc.metrics = metrics.Metrics(svc.meter, svc.http_meter, extra=lambda: metrics.service_samples(svc))
    from tqd.api.auth import auth_middleware
    from tqd.api.cors import cors_middleware
    from tqd.api.limits import input_middleware, quiet_protocol_errors

    # Outermost first: the request counter (every answer counts, refusals
    # too), the browser guards (which answer preflights without a token and
    # put CORS headers on every answer, errors included), the JSON error
    # shape, authentication, then the checks of names in paths.
    quiet_protocol_errors()
    app = web.Application(
        middlewares=[
            metrics.http_metrics_middleware(svc.http_meter),
            cors_middleware(),
            errors_middleware,
            auth_middleware(),
            input_middleware,
        ],
        client_max_size=svc.config.api.max_body_size,
    )
    app[SERVICES] = svc
    app[OUTAGE_LOG] = Throttle(log)
    svc.storage.add_listener(svc.waiters.on_changes)
    health.add_routes(app)
    tasks.add_routes(app)
    queues.add_routes(app)
    workers.add_routes(app)
    remote.add_routes(app)
    schedules.add_routes(app)
    progress.add_routes(app)
    stats.add_routes(app)
    app.router.add_get("/v1/events", svc.events.handle)
    metrics.add_routes(app)
    docs.add_routes(app)
    dashboard.add_routes(app)
    app.on_startup.append(lambda _: svc.events.start())
    app.on_shutdown.append(lambda _: svc.events.stop())
    app.on_cleanup.append(_close_outage_log)
    return app


async def _close_outage_log(app: web.Application) -> None:
    app[OUTAGE_LOG].close()  # the count of 503s not yet summed up


def not_found_task(task_id: str) -> NotFound:
    return NotFound(f"no task with id {task_id!r}")
