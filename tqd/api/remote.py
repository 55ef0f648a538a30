"""The pull API of remote workers: lease, heartbeat, complete, fail, settle.

Tasks of a ``remote`` name wait in queues that tqd's own pool never serves
(see Catalog.remote_queues); workers anywhere, in any language, take them
over HTTP:

* ``POST /v1/queues/{q}/lease`` hands out up to ``max`` tasks, each with a
  ``lease`` (token and deadline), long-polling up to ``wait`` seconds when
  none is pending: a request waits for the store's ``pending`` changes of
  its queue, the same events that wake the local pool. When the queue's
  limits held every task back, it waits for what lifts the limit instead:
  a task leaving ``processing`` (concurrency, group), or the rate bucket's
  next token (``Leased.retry_in``), and leases again within ``wait``;
* ``POST /v1/tasks/{id}/heartbeat``, ``/complete``, ``/fail`` name the
  lease token; a token that is no longer the task's (the lease expired and
  was reclaimed, the task was cancelled, another worker holds it) answers
  409 ``stale_lease`` and changes nothing;
* ``POST /v1/tasks/settle`` settles many leases in one request, and can
  also ``release`` a lease (the task goes back to pending, the attempt not
  counted), for a worker that stops before running what it leased.

A lease that runs out is reclaimed by the supervisor like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tqd.api.app import SERVICES, Services, json_response, not_found_task, read_body, services
from tqd.api.render import task_json
from tqd.api.schemas import (
    CompleteBody,
    FailBody,
    HeartbeatBody,
    LeaseBody,
    SettleBody,
    SettleItem,
    decode,
    encode_payload,
)
from tqd.errors import BadRequest, NotFound, StaleLease, TqdError
from tqd.models import Change, Outcome, QueueChange, Task, make_error, rfc3339, valid_name

log = logging.getLogger("tqd.api.remote")


#: What wakes a waiting lease (see QueueWatch): any change of the queue but
#: a task starting; a task becoming pending; only the queue's own changes
#: (resumed, limits changed).
WAKE_ANY, WAKE_PENDING, WAKE_QUEUE = "any", "pending", "queue"
#: Least pause between two leases of a rate-limited wait (no spinning on a
#: bucket a rounding away from its next token).
MIN_RATE_WAIT = 0.01


class QueueWatch:
    """Futures per queue, resolved when the queue may have work for a lease.

    Each future has a wake mode, chosen by why the last lease came back
    empty: nothing pending (``WAKE_PENDING``: a task became pending), a
    concurrency or group limit (``WAKE_ANY``: a task left processing, or a
    pending one of another group came), a rate limit (``WAKE_QUEUE``: the
    caller waits for the next token itself). A resume or a change of the
    queue's limits wakes every mode.
    """

    def __init__(self) -> None:
        self._by_queue: dict[str, dict[asyncio.Future, str]] = {}
        self.closed = False

    def watch(self, queue: str) -> asyncio.Future:
        """A future that resolves on the queue's next change (any, until
        :meth:`narrow` says which)."""
        fut = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_result(None)
        self._by_queue.setdefault(queue, {})[fut] = WAKE_ANY
        return fut

    def narrow(self, queue: str, fut: asyncio.Future, mode: str) -> None:
        """Wake ``fut`` only on the changes ``mode`` names from now on."""
        futs = self._by_queue.get(queue)
        if futs is not None and fut in futs:
            futs[fut] = mode

    def forget(self, queue: str, fut: asyncio.Future) -> None:
        futs = self._by_queue.get(queue)
        if futs is not None:
            futs.pop(fut, None)
            if not futs:
                del self._by_queue[queue]

    def on_changes(self, changes: Sequence[Change | QueueChange]) -> None:
        """Storage listener: wake the waiters of queues that may have work."""
        if not self._by_queue:
            return
        for c in changes:
            futs = self._by_queue.get(c.queue)
            if not futs:
                continue
            if type(c) is QueueChange:
                wakes = c.event in ("resumed", "limits")
                for fut in futs:
                    if wakes and not fut.done():
                        fut.set_result(None)
            elif c.state != "processing":
                pending = c.state == "pending"
                for fut, mode in futs.items():
                    if not fut.done() and (mode == WAKE_ANY or (pending and mode == WAKE_PENDING)):
                        fut.set_result(None)

    def close(self) -> None:
        """Answer every waiting lease now (the server is shutting down)."""
        self.closed = True
        for futs in self._by_queue.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)


QUEUE_WATCH = web.AppKey("queue_watch", QueueWatch)


def lease_json(t: Task) -> dict[str, Any]:
    """A leased task as a remote worker gets it: the task plus its lease."""
    out = task_json(t)
    out["lease"] = {"token": t.lease_token, "expires_at": rfc3339(t.lease_expires_at)}
    return out


def _remote_queue(svc: Services, name: str) -> str:
    if not valid_name(name):
        raise BadRequest(
            "queue: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    remote = svc.catalog.remote_queues()
    if name not in remote:
        listed = ", ".join(sorted(remote)) or "none are configured"
        raise NotFound(
            f"no remote queue named {name!r}: only queues of remote tasks can be leased "
            f"over the API (remote queues: {listed})"
        )
    return name


async def lease(request: web.Request) -> web.Response:
    """POST /v1/queues/{queue}/lease → ``{"tasks": [task + lease]}`` (maybe empty)."""
    svc = services(request)
    queue = _remote_queue(svc, request.match_info["queue"])
    body = decode(await read_body(request), LeaseBody)
    if body.wait > svc.config.api.max_wait:
        raise BadRequest(f"wait: must be at most {svc.config.api.max_wait:g} seconds")
    worker = body.worker or f"remote@{request.remote or 'unknown'}"
    watch = request.app[QUEUE_WATCH]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body.wait
    while True:
        waiting = body.wait > 0 and not watch.closed and not svc.draining
        # Watch before leasing: a task enqueued between an empty lease and
        # the watch would otherwise be missed until the wait ends.
        fut = watch.watch(queue) if waiting else None
        try:
            tasks = await svc.storage.lease(
                queue, body.max, worker, svc.clock.now(), body.visibility_timeout
            )
            left = deadline - loop.time()
            if tasks or fut is None or left <= 0:
                break
            # A limit held the tasks back: wait for what lifts it rather than
            # for new pending tasks (which it would hold back too).
            limited = tasks.limited
            if limited == "rate":
                watch.narrow(queue, fut, WAKE_QUEUE)
                retry_in = tasks.retry_in or MIN_RATE_WAIT
                pause = min(left, max(retry_in, MIN_RATE_WAIT))
            else:
                watch.narrow(queue, fut, WAKE_ANY if limited else WAKE_PENDING)
                pause = left
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout=pause)
            except TimeoutError:
                if pause >= left:
                    tasks = []
                    break
        finally:
            if fut is not None:
                watch.forget(queue, fut)
        if request.transport is None or request.transport.is_closing():
            # The worker hung up while waiting: lease nothing it cannot receive.
            break
    if tasks and svc.meter is not None:
        # The lease counts as the start: of the enqueue-to-start latency, and
        # of the duration that a settle through this process ends.
        now = svc.clock.now()
        for t in tasks:
            svc.meter.remote_leased(t, now)
    return json_response({"tasks": [lease_json(t) for t in tasks]})


async def _stale_or_missing(svc: Services, task_id: str) -> TqdError:
    if await svc.storage.get(task_id) is None:
        return not_found_task(task_id)
    return StaleLease(
        f"task {task_id}: the lease token is not current (the lease expired and was "
        "taken back, the task was cancelled or settled, or another worker holds it)"
    )


async def heartbeat(request: web.Request) -> web.Response:
    """POST /v1/tasks/{id}/heartbeat → the lease with its new deadline; 409 when stale."""
    svc = services(request)
    task_id = request.match_info["id"]
    body = decode(await read_body(request), HeartbeatBody)
    [held] = await svc.storage.extend([(task_id, body.token)], svc.clock.now(), body.extend)
    task = await svc.storage.get(task_id) if held else None
    if task is None or task.lease_token != body.token:
        raise await _stale_or_missing(svc, task_id)
    return json_response(
        {"id": task_id, "lease": {"token": body.token,
                                  "expires_at": rfc3339(task.lease_expires_at)}}
    )


async def complete(request: web.Request) -> web.Response:
    """POST /v1/tasks/{id}/complete → ``{"id", "state": "completed"}``; 409 when stale."""
    svc = services(request)
    task_id = request.match_info["id"]
    body = decode(await read_body(request), CompleteBody)
    outcome = Outcome(task_id=task_id, token=body.token, kind="complete",
                      result=encode_payload(body.result, "result"))
    now = svc.clock.now()
    [accepted] = await svc.storage.settle([outcome], now)
    if not accepted:
        raise await _stale_or_missing(svc, task_id)
    _measure(svc, [outcome], now)
    return json_response({"id": task_id, "state": "completed"})


async def fail(request: web.Request) -> web.Response:
    """POST /v1/tasks/{id}/fail → ``{"id", "state", "retry_at"}``; 409 when stale."""
    svc = services(request)
    task_id = request.match_info["id"]
    body = decode(await read_body(request), FailBody)
    task = await svc.storage.get(task_id)
    if task is None:
        raise not_found_task(task_id)
    outcome = _failure(svc, task, body.token, body.error, body.retry, body.delay)
    now = svc.clock.now()
    accepted = outcome is not None and (await svc.storage.settle([outcome], now))[0]
    if not accepted:
        raise await _stale_or_missing(svc, task_id)
    assert outcome is not None
    _measure(svc, [outcome], now)
    return json_response(_fail_json(outcome))


def _measure(svc: Services, settled: Sequence[Outcome], now: float) -> None:
    """Tell the meter that these accepted outcomes ended their remote leases."""
    meter = svc.meter
    if meter is None:
        return
    for o in settled:
        if o.kind == "release":
            meter.remote_released(o.task_id, o.token)
        else:
            meter.remote_settled(o.task_id, o.token, now)


def _failure(
    svc: Services, task: Task, token: str, message: str, retry: bool, delay: float | None
) -> Outcome | None:
    """The fail outcome of the attempt ``task`` runs under ``token``, deciding
    the retry as the local pool does; None when the token is not current."""
    if task.state != "processing" or task.lease_token != token:
        return None
    now = svc.clock.now()
    attempt = task.attempts + 1
    retry_at = None
    if retry and attempt < task.max_attempts:
        if delay is None:
            definition = svc.catalog.get(task.name)
            delay = definition.backoff(attempt) if definition else 1.0
        retry_at = now + delay
    log.warning(
        "task %s (%s) attempt %d/%d failed on a remote worker (%s): %s",
        task.id, task.name, attempt, task.max_attempts,
        "retry" if retry_at is not None else "no retry", message,
        extra={"task_id": task.id, "queue": task.queue, "task_name": task.name},
    )
    return Outcome(task_id=task.id, token=token, kind="fail", queue=task.queue, name=task.name,
                   error=make_error("remote", message, attempt, now), retry_at=retry_at)


def _fail_json(o: Outcome) -> dict[str, Any]:
    if o.retry_at is None:
        return {"id": o.task_id, "state": "failed", "retry_at": None}
    return {"id": o.task_id, "state": "scheduled", "retry_at": rfc3339(o.retry_at)}


async def settle(request: web.Request) -> web.Response:
    """POST /v1/tasks/settle → ``{"results": [...]}``, one per outcome, in order:
    ``{"id", "ok": true, "state", ...}`` or ``{"id", "ok": false, "error"}``."""
    svc = services(request)
    body = decode(await read_body(request), SettleBody)
    items = body.outcomes
    if not items:
        raise BadRequest("outcomes: at least one outcome is required")
    if len(items) > svc.config.api.max_batch:
        raise BadRequest(
            f"outcomes: {len(items)} is over the batch limit of {svc.config.api.max_batch}"
        )
    # Failures need the task (its attempts decide the retry); one read each.
    failing = [i for i, item in enumerate(items) if item.outcome == "fail"]
    found = await asyncio.gather(*(svc.storage.get(items[i].id) for i in failing))
    tasks = dict(zip(failing, found, strict=True))
    outcomes: list[Outcome] = []
    placed: list[int] = []
    for i, item in enumerate(items):
        outcome = _settle_outcome(svc, item, tasks.get(i), f"outcomes[{i}].")
        if outcome is not None:
            outcomes.append(outcome)
            placed.append(i)
    now = svc.clock.now()
    accepted = await svc.storage.settle(outcomes, now) if outcomes else []
    _measure(svc, [o for o, good in zip(outcomes, accepted, strict=True) if good], now)
    ok = dict(zip(placed, zip(outcomes, accepted, strict=True), strict=True))
    # Tell a stale token from a task that does not exist (rare: read only those).
    refused = [i for i in range(len(items)) if not ok.get(i, (None, False))[1]]
    errors = dict(zip(refused, await asyncio.gather(
        *(_stale_or_missing(svc, items[i].id) for i in refused)), strict=True))
    results = []
    for i, item in enumerate(items):
        o, good = ok.get(i, (None, False))
        if not good or o is None:
            results.append({"id": item.id, "ok": False, **errors[i].to_json()})
        elif o.kind == "complete":
            results.append({"id": item.id, "ok": True, "state": "completed"})
        elif o.kind == "release":
            results.append({"id": item.id, "ok": True, "state": "pending"})
        else:
            results.append({**_fail_json(o), "ok": True})
    return json_response({"results": results})


def _settle_outcome(svc: Services, item: SettleItem, task: Task | None, where: str) -> Outcome | None:
    if item.outcome == "complete":
        return Outcome(task_id=item.id, token=item.token, kind="complete",
                       result=encode_payload(item.result, "result", where))
    if item.outcome == "release":
        return Outcome(task_id=item.id, token=item.token, kind="release")
    if task is None:
        return None
    return _failure(svc, task, item.token, item.error, item.retry, item.delay)


async def _on_shutdown(app: web.Application) -> None:
    app[QUEUE_WATCH].close()


async def _on_cleanup(app: web.Application) -> None:
    app[SERVICES].storage.remove_listener(app[QUEUE_WATCH].on_changes)


def add_routes(app: web.Application) -> None:
    """Register the pull API and its long-poll watcher on ``app``."""
    watch = QueueWatch()
    app[QUEUE_WATCH] = watch
    app[SERVICES].storage.add_listener(watch.on_changes)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    app.router.add_post("/v1/queues/{queue}/lease", lease)
    app.router.add_post("/v1/tasks/settle", settle)
    app.router.add_post("/v1/tasks/{id}/heartbeat", heartbeat)
    app.router.add_post("/v1/tasks/{id}/complete", complete)
    app.router.add_post("/v1/tasks/{id}/fail", fail)
