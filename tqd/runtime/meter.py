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
        self._running: Mapping[str, Any] = {}
        self._seconds: dict[tuple[int, str], StatsBucket] = {}

    def watch_running(self, running: Mapping[str, Any]) -> None:
        """The ids of the tasks this process runs (the pool's ``running``)."""
        self._running = running

    # -- counting -----------------------------------------------------------

    def _bucket(self, t: int, queue: str) -> StatsBucket:
        b = self._seconds.get((t, queue))
        if b is None:
            b = self._seconds[(t, queue)] = StatsBucket(t=t, queue=queue)
        return b

    def on_changes(self, changes: Sequence[Change | QueueChange]) -> None:
        """Storage listener: count the changes this process made."""
        second = -1
        running = self._running
        for c in changes:
            if type(c) is not Change:
                continue
            op = c.op
            if op == "settle":
                state = c.state
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
                if running and c.id in running and c.state in ("pending", "failed"):
                    self.leases_lost += 1
                if not op:
                    continue  # another process's work: it counts it
                kind = RECLAIMED
            else:
                continue
            key = (c.queue, c.name)
            counts = self.tasks.get(key)
            if counts is None:
                counts = self.tasks[key] = [0, 0, 0, 0, 0]
            counts[kind] += 1
            if kind == RECLAIMED and c.state == "failed":
                counts[FAILED] += 1
                kind = FAILED
            if kind <= FAILED:
                if second < 0:
                    second = int(self._clock.now())
                b = self._bucket(second, c.queue)
                if kind == ENQUEUED:
                    b.enqueued += 1
                elif kind == COMPLETED:
                    b.completed += 1
                else:
                    b.failed += 1

    def task_started(self, task: Task, now: float) -> None:
        """A worker of this process started ``task`` at ``now`` (latency)."""
        due = task.run_at
        if due is None:
            if task.attempts:
                return  # put back by hand or reclaimed: no enqueue time to measure from
            due = task.created_at
        seconds = now - due if now > due else 0.0
        hist = self.latency.get(task.queue)
        if hist is None:
            hist = self.latency[task.queue] = Histogram(LATENCY_BOUNDS)
        hist.observe(seconds)
        lat = self._bucket(int(now), task.queue).latency
        i = bucket_of(seconds * 1000.0)
        lat[i] = lat.get(i, 0) + 1

    def task_finished(self, task: Task, now: float) -> None:
        """A worker of this process finished running ``task`` at ``now`` (duration)."""
        if task.started_at is None:
            return
        key = (task.queue, task.name)
        hist = self.duration.get(key)
        if hist is None:
            hist = self.duration[key] = Histogram(DURATION_BOUNDS)
        hist.observe(max(0.0, now - task.started_at))

    # -- statistics for the store -------------------------------------------

    def take_stats(self) -> list[StatsBucket]:
        """The per-second counts gathered since the last call, per queue and
        summed over all queues; the meter forgets them."""
        if not self._seconds:
            return []
        taken, self._seconds = self._seconds, {}
        totals: dict[int, StatsBucket] = {}
        for (t, _), b in taken.items():
            total = totals.get(t)
            if total is None:
                total = totals[t] = StatsBucket(t=t, queue=ALL_QUEUES)
            total.enqueued += b.enqueued
            total.completed += b.completed
            total.failed += b.failed
            merge_into(total.latency, b.latency)
        return [*taken.values(), *totals.values()]

    def give_back(self, buckets: Sequence[StatsBucket]) -> None:
        """Statistics the store did not take: keep them for the next try
        (bounded: the oldest are dropped beyond MAX_PENDING_STATS)."""
        for b in buckets:
            if b.queue == ALL_QUEUES:
                continue  # take_stats sums them again
            mine = self._bucket(b.t, b.queue)
            mine.enqueued += b.enqueued
            mine.completed += b.completed
            mine.failed += b.failed
            merge_into(mine.latency, b.latency)
        if len(self._seconds) > MAX_PENDING_STATS:
            for key in sorted(self._seconds)[: len(self._seconds) - MAX_PENDING_STATS]:
                del self._seconds[key]
