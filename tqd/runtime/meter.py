"""The meter: what this process did, counted cheaply for /metrics and /v1/stats.

Task outcomes are counted from the store's change events: a change whose
``op`` is set was made by this process (see ``Change.op``), so each process
counts its own work and a Redis deployment's totals are the sum over its
processes. The worker pool reports when it starts and finishes a task (for
the latency and duration histograms). Per task this costs a few dict
operations; nothing is formatted until /metrics is scraped, and per-second
statistics are handed to the store once a second by the StatsRecorder.

Latency is enqueue-to-start: from the time a task became due (``run_at``,
else its creation) to the time a worker started it. A task put back by hand
(retry, redrive) or by a reclaim has no such time and is not measured.

Tasks of remote pull workers: the lease through this process's API is the
start, and a complete or fail through this process's API under the same
lease is the end of the duration. A lease settled through another process
(or never) is not measured; at most ``MAX_REMOTE_LEASES`` leases are
remembered, the oldest forgotten first.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

from tqd.clock import Clock
from tqd.histogram import bucket_of, merge_into
from tqd.models import ALL_QUEUES, Change, QueueChange, StatsBucket, Task

#: Indexes of the per (queue, task name) counters.
ENQUEUED, COMPLETED, FAILED, RETRIED, RECLAIMED = range(5)
COUNTER_NAMES = ("enqueued", "completed", "failed", "retried", "reclaimed")

#: Histogram bounds (seconds) of /metrics, as Prometheus ``le`` labels.
LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
DURATION_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 300.0, 900.0, 3600.0)

#: Most (second, queue) statistics kept while the store cannot take them.
MAX_PENDING_STATS = 50_000
#: Most remote leases remembered for their duration (about 150 bytes each).
MAX_REMOTE_LEASES = 50_000


class Histogram:
    """Counts per bound (the last slot is +Inf) and the sum of observed values."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Meter:
    """Counters and histograms of this process's task work (see module docstring)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        #: (queue, name) -> [enqueued, completed, failed, retried, reclaimed]
        self.tasks: dict[tuple[str, str], list[int]] = {}
        #: queue -> enqueue-to-start latency (seconds)
        self.latency: dict[str, Histogram] = {}
        #: (queue, name) -> processing duration (seconds)
        self.duration: dict[tuple[str, str], Histogram] = {}
        #: Leases of this process's running tasks that a supervisor took back.
        self.leases_lost = 0
        #: (task id, lease token) -> (queue, name, started) of remote leases
        #: made through this process, oldest first.
        self._remote: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._running: Mapping[str, Any] = {}
        #: (second, queue) -> [enqueued, completed, failed, latency histogram]
        self._seconds: dict[tuple[int, str], list[Any]] = {}
        self._last: tuple[int, str, list[Any]] = (-1, "", [])

    def watch_running(self, running: Mapping[str, Any]) -> None:
        """The ids of the tasks this process runs (the pool's ``running``)."""
        self._running = running

    # -- counting (on every task: kept flat and cheap) ------------------------

    def _second(self, t: int, queue: str) -> list[Any]:
        """The statistics of ``queue`` for second ``t`` (the last one is cached)."""
        last = self._last
        if last[0] == t and last[1] == queue:
            return last[2]
        sec = self._seconds.get((t, queue))
        if sec is None:
            sec = self._seconds[(t, queue)] = [0, 0, 0, {}]
        self._last = (t, queue, sec)
        return sec

    def on_changes(self, changes: Sequence[Change | QueueChange]) -> None:
        """Storage listener: count the changes this process made."""
        tasks = self.tasks
        last_queue = last_name = None
        counts: list[int] = []
        sec: list[Any] | None = None
        second = -1
        for c in changes:
            if type(c) is not Change:
                continue
            task_id, queue, name, state, op = c
            if op == "settle":
                if state == "completed":
                    kind = COMPLETED
                elif state == "failed":
                    kind = FAILED
                elif state == "scheduled":
                    kind = RETRIED
                else:
                    continue  # handed back at shutdown: not an outcome
            elif op == "enqueue":
                kind = ENQUEUED
            elif op == "reclaim" or not op:
                running = self._running
                if running and task_id in running and state in ("pending", "failed"):
                    self.leases_lost += 1
                if not op:
                    continue  # another process's work: it counts it
                kind = RECLAIMED
            else:
                continue
            # Changes come in runs of one queue and name: look them up once a run.
            if queue != last_queue or name != last_name:
                counts = tasks.get((queue, name))  # type: ignore[assignment]
                if counts is None:
                    counts = tasks[(queue, name)] = [0, 0, 0, 0, 0]
                if queue != last_queue:
                    sec = None
                last_queue, last_name = queue, name
            counts[kind] += 1
            if kind == RECLAIMED:
                if state != "failed":
                    continue
                counts[FAILED] += 1  # lost with its last attempt: failed for good
                kind = FAILED
            if kind <= FAILED:
                if sec is None:
                    if second < 0:
                        second = int(self._clock.now())
                    sec = self._second(second, queue)
                sec[kind] += 1

    def task_started(self, task: Task, now: float) -> None:
        """A worker of this process started ``task`` at ``now`` (latency)."""
        due = task.run_at
        if due is None:
            if task.attempts:
                return  # put back by hand or reclaimed: no enqueue time to measure from
            due = task.created_at
        seconds = now - due if now > due else 0.0
        queue = task.queue
        hist = self.latency.get(queue)
        if hist is None:
            hist = self.latency[queue] = Histogram(LATENCY_BOUNDS)
        hist.counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        hist.sum += seconds
        lat = self._second(int(now), queue)[3]
        i = bucket_of(seconds * 1000.0)
        lat[i] = lat.get(i, 0) + 1

    def task_finished(self, task: Task, now: float) -> None:
        """A worker of this process finished running ``task`` at ``now`` (duration)."""
        if task.started_at is not None:
            self._observe_duration(task.queue, task.name, task.started_at, now)

    def remote_leased(self, task: Task, now: float) -> None:
        """A remote worker leased ``task`` (carrying its lease) through this
        process at ``now``: its start (latency) and the start of its duration."""
        self.task_started(task, now)
        if task.lease_token is None:
            return
        remote = self._remote
        remote[(task.id, task.lease_token)] = (task.queue, task.name, now)
        if len(remote) > MAX_REMOTE_LEASES:
            del remote[next(iter(remote))]

    def remote_settled(self, task_id: str, token: str, now: float) -> None:
        """A remote worker completed or failed the attempt it leased under
        ``token``, and the store accepted it: the end of its duration."""
        lease = self._remote.pop((task_id, token), None)
        if lease is not None:
            self._observe_duration(*lease, now)

    def remote_released(self, task_id: str, token: str) -> None:
        """A remote lease handed back unrun: nothing to measure."""
        self._remote.pop((task_id, token), None)

    def _observe_duration(self, queue: str, name: str, started: float, now: float) -> None:
        key = (queue, name)
        hist = self.duration.get(key)
        if hist is None:
            hist = self.duration[key] = Histogram(DURATION_BOUNDS)
        seconds = now - started if now > started else 0.0
        hist.counts[bisect_left(DURATION_BOUNDS, seconds)] += 1
        hist.sum += seconds

    # -- statistics for the store -------------------------------------------

    def take_stats(self) -> list[StatsBucket]:
        """The per-second counts gathered since the last call, per queue and
        summed over all queues; the meter forgets them."""
        if not self._seconds:
            return []
        taken, self._seconds = self._seconds, {}
        self._last = (-1, "", [])
        out: list[StatsBucket] = []
        totals: dict[int, StatsBucket] = {}
        for (t, queue), (e, c, f, lat) in taken.items():
            out.append(StatsBucket(t=t, queue=queue, enqueued=e, completed=c, failed=f,
                                   latency=lat))
            total = totals.get(t)
            if total is None:
                total = totals[t] = StatsBucket(t=t, queue=ALL_QUEUES)
            total.enqueued += e
            total.completed += c
            total.failed += f
            merge_into(total.latency, lat)
        return [*out, *totals.values()]

    def give_back(self, buckets: Sequence[StatsBucket]) -> None:
        """Statistics the store did not take: keep them for the next try
        (bounded: the oldest are dropped beyond MAX_PENDING_STATS)."""
        for b in buckets:
            if b.queue == ALL_QUEUES:
                continue  # take_stats sums them again
            sec = self._second(b.t, b.queue)
            sec[0] += b.enqueued
            sec[1] += b.completed
            sec[2] += b.failed
            merge_into(sec[3], b.latency)
        if len(self._seconds) > MAX_PENDING_STATS:
            for key in sorted(self._seconds)[: len(self._seconds) - MAX_PENDING_STATS]:
                del self._seconds[key]
            self._last = (-1, "", [])
