"""``RemoteWorker``: run Python functions for the tasks of a remote queue.

A worker long-polls ``POST /v1/queues/{q}/lease`` for as many tasks as it
has free slots, runs the function configured for each task's name (async
functions on the loop, plain ones in a thread), keeps each lease alive with
heartbeats at a third of its length, and reports outcomes in batches
through ``POST /v1/tasks/settle``. A function receives ``(payload, task)``
like a local python handler; it raises :class:`TaskFailed` to fail with a
message (``retry=False`` for the dead letters, ``delay`` to choose the next
attempt's time); any other exception fails the attempt and retries while
attempts remain.

On ``stop()`` it leases nothing more, lets running functions finish within
``stop_grace`` seconds, and hands the rest back (released: the attempt does
not count). A lease that the server no longer honours (the task was
cancelled, or the lease ran out and was taken back) stops its function; a
function in a thread cannot be stopped, and its result is then dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from tqd.client.aio import AsyncClient
from tqd.client.calls import TaskJSON
from tqd.client.errors import ApiError, Unreachable
from tqd.models import PROGRESS_MESSAGE_MAX, check_fraction
from tqd.runtime.handlers.base import LatestOnLoop, TaskFailed

__all__ = ["RemoteTask", "RemoteWorker", "TaskFailed"]

log = logging.getLogger("tqd.worker")

Function = Callable[[Any, "RemoteTask"], Any]

_SHUTDOWN, _LOST = "shutdown", "lost"


class RemoteTask:
    """What a function knows about the task it runs."""

    __slots__ = ("_hop", "data")

    def __init__(self, data: TaskJSON, hop: LatestOnLoop | None = None) -> None:
        #: The task as the lease returned it (id, name, queue, payload, lease, ...).
        self.data = data
        self._hop = hop

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the function got: ``fraction`` from 0 to 1 and a
        short message. Callable from async and plain (threaded) functions,
        as often as wanted: the latest report is sent, one request at a time
        per task. ValueError for a fraction outside [0, 1]."""
        value = check_fraction(fraction)
        if self._hop is not None:
            self._hop.put(value, str(message)[:PROGRESS_MESSAGE_MAX])

    @property
    def task_id(self) -> str:
        return self.data["id"]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def queue(self) -> str:
        return self.data["queue"]

    @property
    def attempt(self) -> int:
        """The number of this attempt, from 1."""
        return self.data["attempts"] + 1

    @property
    def max_attempts(self) -> int:
        return self.data["max_attempts"]

    @property
    def payload(self) -> Any:
        return self.data["payload"]


@dataclass(slots=True, eq=False)
class _Job:
    task: RemoteTask
    token: str
    #: Seconds a heartbeat extends the lease by; None: the task's own timeout.
    extend: float | None
    #: Seconds from a lease (or heartbeat) to its deadline, on the server's clock.
    span: float
    #: Loop time of the next heartbeat.
    beat_at: float
    job: asyncio.Task | None = None
    stop_reason: str | None = None
    #: The latest progress not sent yet, and the request sending them.
    progress: tuple[float, str] | None = None
    sender: asyncio.Task | None = None


class RemoteWorker:
    """Leases the tasks of one remote queue and runs a function per task name.

    ``functions`` maps task names to functions ``f(payload, task)``, async or
    plain. ``concurrency`` bounds the tasks running at once;
    ``visibility_timeout`` (seconds) replaces the tasks' own lease length;
    ``poll_wait`` is how long one lease request waits for work.
    """

    def __init__(
        self,
        queue: str,
        functions: Mapping[str, Function],
        *,
        url: str | None = None,
        token: str | None = None,
        concurrency: int = 8,
        visibility_timeout: float | None = None,
        poll_wait: float = 20.0,
        stop_grace: float = 10.0,
        name: str | None = None,
        client: AsyncClient | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.queue = queue
        self.functions = dict(functions)
        self.concurrency = concurrency
        self.visibility_timeout = visibility_timeout
        self.poll_wait = poll_wait
        self.stop_grace = stop_grace
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{queue}"
        self._client = client or AsyncClient(url, token)
        self._own_client = client is None
        self._running: dict[str, _Job] = {}
        self._outcomes: list[dict[str, Any]] = []
        self._threads: ThreadPoolExecutor | None = None
        self._stopping = False
        self._started = False
        self._poll: asyncio.Future | None = None
        self._slot = asyncio.Event()
        self._settle_wake = asyncio.Event()
        self._beat_wake = asyncio.Event()
        self._settles_closed = False
        #: Tasks that ended, by outcome: completed, failed (attempts), released, lost.
        self.counts = {"completed": 0, "failed": 0, "released": 0, "lost": 0}

    # -- life ---------------------------------------------------------------

    def stop(self) -> None:
        """Lease nothing more; ``run`` returns once running tasks end or are handed back."""
        self._stopping = True
        self._slot.set()
        if self._poll is not None:
            self._poll.cancel()

    def run_sync(self) -> None:
        """Run until SIGINT or SIGTERM (blocking), then stop gracefully."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stop)
            await self.run()

        asyncio.run(main())

    async def run(self) -> None:
        """Lease, run and settle until ``stop()``; then finish as it promises."""
        if self._started:
            raise RuntimeError("a RemoteWorker runs once")
        self._started = True
        settler = asyncio.create_task(self._settle_loop(), name="tqd-worker-settle")
        beater = asyncio.create_task(self._heartbeat_loop(), name="tqd-worker-heartbeat")
        try:
            await self._lease_loop()
        finally:
            await self._finish()
            self._settles_closed = True
            self._settle_wake.set()
            self._beat_wake.set()
            await asyncio.gather(settler, beater, return_exceptions=True)
            if self._threads is not None:
                self._threads.shutdown(wait=False, cancel_futures=True)
            if self._own_client:
                await self._client.close()

    async def _finish(self) -> None:
        self._stopping = True
        jobs = [j.job for j in self._running.values() if j.job is not None]
        if jobs:
            await asyncio.wait(jobs, timeout=self.stop_grace)
        for j in list(self._running.values()):
            self._interrupt(j, _SHUTDOWN)
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)

    # -- leasing ------------------------------------------------------------

    async def _lease_loop(self) -> None:
        failures = 0
        while not self._stopping:
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            self._poll = asyncio.ensure_future(self._client.lease(
                self.queue, free, wait=self.poll_wait,
                visibility_timeout=self.visibility_timeout, worker=self.name,
            ))
            try:
                tasks = await self._poll
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except (Unreachable, ApiError) as err:
                if isinstance(err, ApiError) and err.status < 500:
                    raise  # a wrong queue name or a refused token: not worth retrying
                failures += 1
                delay = min(5.0, 0.1 * 2 ** min(failures, 6))
                if failures == 1 or failures % 20 == 0:
                    log.warning("leasing from %s failed (%s); retrying in %.1fs",
                                self.queue, err, delay)
                await self._pause(delay)
                continue
            finally:
                self._poll = None
            failures = 0
            for data in tasks:
                self._start(data)

    async def _pause(self, seconds: float) -> None:
        self._slot.clear()
        try:
            await asyncio.wait_for(self._slot.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _start(self, data: TaskJSON) -> None:
        lease = data["lease"]
        span = self.visibility_timeout or _lease_span(data)
        loop = asyncio.get_running_loop()
        task = RemoteTask(data)
        job = _Job(task, lease["token"], self.visibility_timeout, span, loop.time() + span / 3)
        task._hop = LatestOnLoop(loop, lambda f, m: self._progress(job, f, m))
        self._running[task.task_id] = job
        job.job = asyncio.create_task(self._run(job))
        self._beat_wake.set()

    # -- running ------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        outcome: dict[str, Any] | None = None
        try:
            outcome = await self._attempt(job)
            if outcome is not None and job.sender is not None and not job.sender.done():
                # The last report goes before the outcome, which ends the lease.
                await asyncio.wait([job.sender], timeout=5.0)
        finally:
            del self._running[job.task.task_id]
            self._slot.set()
            if outcome is not None:
                self._outcomes.append(outcome)
                self._settle_wake.set()

    async def _attempt(self, job: _Job) -> dict[str, Any] | None:
        task = job.task
        base = {"id": task.task_id, "token": job.token}
        fn = self.functions.get(task.name)
        timeout = task.data.get("timeout")
        timer = asyncio.timeout(timeout) if timeout else None
        try:
            if fn is None:
                raise TaskFailed(f"no function for task {task.name!r} in worker {self.name}")
            if timer is None:
                result = await self._call(fn, task)
            else:
                async with timer:
                    result = await self._call(fn, task)
            orjson.dumps(result)
        except asyncio.CancelledError:
            if job.stop_reason == _SHUTDOWN:
                self.counts["released"] += 1
                return {**base, "outcome": "release"}
            if job.stop_reason == _LOST:
                self.counts["lost"] += 1
                return None
            raise
        except TaskFailed as err:
            return self._failed(base, err.message, err.retry, err.delay)
        except TimeoutError as err:
            if timer is not None and timer.expired():
                return self._failed(base, f"timed out after {timeout:g}s", True, None)
            return self._failed(base, _describe(err), True, None)
        except TypeError as err:
            return self._failed(base, f"the result is not JSON: {err}", False, None)
        except Exception as err:
            return self._failed(base, _describe(err), True, None)
        self.counts["completed"] += 1
        return {**base, "outcome": "complete", "result": result}

    def _failed(self, base: dict[str, Any], message: str, retry: bool,
                delay: float | None) -> dict[str, Any]:
        self.counts["failed"] += 1
        out = {**base, "outcome": "fail", "error": message[:4000], "retry": retry}
        if delay is not None:
            out["delay"] = delay
        return out

    async def _call(self, fn: Function, task: RemoteTask) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(task.payload, task)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix="tqd-worker")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, fn, task.payload, task)

    def _interrupt(self, job: _Job, reason: str) -> None:
        if job.stop_reason is None and job.job is not None and not job.job.done():
            job.stop_reason = reason
            job.job.cancel()

    # -- progress -----------------------------------------------------------

    def _progress(self, job: _Job, fraction: float, message: str) -> None:
        if job.stop_reason is not None:
            return
        job.progress = (fraction, message)
        if job.sender is None or job.sender.done():
            job.sender = asyncio.create_task(self._send_progress(job))

    async def _send_progress(self, job: _Job) -> None:
        """Send the latest report until none is left: one request in flight
        per task, so a chatty function costs the server little."""
        while job.progress is not None and job.stop_reason is None:
            (fraction, message), job.progress = job.progress, None
            try:
                await self._client.progress(job.task.task_id, job.token, fraction, message)
            except ApiError as err:
                if err.status in (404, 409):
                    return  # the lease is gone; the heartbeat stops the function
                log.warning("progress of task %s was refused: %s", job.task.task_id, err)
            except Unreachable as err:
                log.debug("progress of task %s not sent: %s", job.task.task_id, err)

    # -- heartbeats ---------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._settles_closed:
            now = loop.time()
            due = [j for j in self._running.values() if j.beat_at <= now and j.stop_reason is None]
            if due:
                await asyncio.gather(*(self._beat(j) for j in due))
            nxt = min((j.beat_at for j in self._running.values()), default=None)
            self._beat_wake.clear()
            wait = None if nxt is None else max(0.01, nxt - loop.time())
            try:
                await asyncio.wait_for(self._beat_wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def _beat(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._client.heartbeat(job.task.task_id, job.token, job.extend)
        except ApiError as err:
            if err.status in (404, 409):
                log.info("task %s lost its lease (%s); stopping it", job.task.task_id, err.code)
                self._interrupt(job, _LOST)
                return
            log.warning("heartbeat of task %s failed: %s", job.task.task_id, err)
            job.beat_at = loop.time() + 1.0
            return
        except Unreachable as err:
            log.warning("heartbeat of task %s failed: %s", job.task.task_id, err)
            job.beat_at = loop.time() + 1.0
            return
        job.beat_at = loop.time() + max(0.05, job.span / 3)

    # -- settling -----------------------------------------------------------

    async def _settle_loop(self) -> None:
        failures = 0
        while True:
            if not self._outcomes:
                if self._settles_closed:
                    return
                self._settle_wake.clear()
                await self._settle_wake.wait()
                continue
            batch, self._outcomes = self._outcomes[:1000], self._outcomes[1000:]
            try:
                results = await self._client.settle(batch)
            except Unreachable as err:
                failures += 1
                if self._settles_closed and failures > 5:
                    log.error("could not report %d outcomes (%s); their leases will expire",
                              len(batch) + len(self._outcomes), err)
                    return
                self._outcomes[:0] = batch
                delay = min(5.0, 0.1 * 2 ** min(failures, 6))
                log.warning("reporting %d outcomes failed (%s); retrying in %.1fs",
                            len(batch), err, delay)
                await asyncio.sleep(delay)
                continue
            except ApiError as err:
                log.error("the server refused %d outcomes: %s", len(batch), err)
                continue
            failures = 0
            refused = [r["id"] for r in results if not r.get("ok")]
            if refused:
                log.info("%d outcomes were refused (their leases were taken back): %s",
                         len(refused), ", ".join(refused[:5]))


def _lease_span(data: TaskJSON) -> float:
    """Seconds from the lease to its deadline, on the server's clock."""
    try:
        started = datetime.fromisoformat(data["started_at"])
        expires = datetime.fromisoformat(data["lease"]["expires_at"])
        return max(0.3, (expires - started).total_seconds())
    except (KeyError, TypeError, ValueError):
        return 30.0


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
