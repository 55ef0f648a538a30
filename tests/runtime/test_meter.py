"""The meter counts this process's work from change events, cheaply and exactly."""

from __future__ import annotations

import pytest

from tqd.clock import FakeClock
from tqd.errors import StorageUnavailable
from tqd.histogram import bucket_of, percentiles
from tqd.models import ALL_QUEUES, Change, QueueChange, StatsBucket, Task
from tqd.runtime import meter as meter_mod
from tqd.runtime.meter import COMPLETED, ENQUEUED, FAILED, RECLAIMED, RETRIED, Meter


def ch(state: str, op: str, id: str = "t1", queue: str = "q", name: str = "job") -> Change:
    return Change(id, queue, name, state, op)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def meter(clock) -> Meter:
    return Meter(clock)


def test_each_outcome_is_counted_from_the_operation_that_made_it(meter):
    meter.on_changes([
        ch("pending", "enqueue"), ch("scheduled", "enqueue", "t2"),
        ch("processing", "lease"), ch("completed", "settle"),
        ch("scheduled", "settle", "t2"), ch("failed", "settle", "t3"),
        ch("pending", "settle", "t4"),  # handed back at shutdown: no outcome
        ch("pending", "reclaim", "t5"), ch("failed", "reclaim", "t6"),
        ch("pending", "promote"), ch("pending", "retry"), ch("pending", "redrive"),
        ch("deleted", "expire"), ch("cancelled", "cancel"), QueueChange("q", "paused"),
    ])
    counts = meter.tasks[("q", "job")]
    assert counts[ENQUEUED] == 2
    assert counts[COMPLETED] == 1
    assert counts[RETRIED] == 1
    assert counts[RECLAIMED] == 2
    assert counts[FAILED] == 2  # dead at settle, and reclaimed with no attempt left


def test_changes_of_other_processes_are_not_counted(meter):
    meter.on_changes([ch("pending", ""), ch("completed", ""), ch("failed", "")])
    assert meter.tasks == {}
    assert meter.take_stats() == []


def test_a_running_task_taken_back_by_a_supervisor_is_a_lost_lease(meter):
    running = {"t1": object(), "t2": object()}
    meter.watch_running(running)
    meter.on_changes([ch("pending", "", "t1"),  # another process reclaimed it
                      ch("failed", "reclaim", "t2"),  # our own supervisor did
                      ch("cancelled", "", "t1"),  # a cancel is not a reclaim
                      ch("pending", "", "t9")])  # not ours
    assert meter.leases_lost == 2


def test_latency_from_due_time_and_duration(meter, clock):
    now = clock.now()
    fresh = Task(id="a", name="job", queue="q", created_at=now - 0.25)
    delayed = Task(id="b", name="job", queue="q", created_at=now - 100, run_at=now - 0.5)
    retried_by_hand = Task(id="c", name="job", queue="q", created_at=now - 999, attempts=1)
    for t in (fresh, delayed, retried_by_hand):
        meter.task_started(t, now)
    hist = meter.latency["q"]
    assert sum(hist.counts) == 2
    assert hist.sum == pytest.approx(0.75)
    fresh.started_at = now
    meter.task_finished(fresh, now + 2.0)
    assert meter.duration[("q", "job")].sum == pytest.approx(2.0)
    [per_queue, total] = meter.take_stats()
    assert per_queue.latency == total.latency == {bucket_of(250.0): 1, bucket_of(500.0): 1}


def test_per_second_statistics_per_queue_and_in_total(meter, clock):
    meter.on_changes([ch("pending", "enqueue", queue="a"), ch("pending", "enqueue", queue="b")])
    clock.advance(1)
    meter.on_changes([ch("completed", "settle", queue="a"), ch("failed", "settle", queue="a")])
    got = {(b.t, b.queue): (b.enqueued, b.completed, b.failed) for b in meter.take_stats()}
    t = int(clock.now()) - 1
    assert got == {
        (t, "a"): (1, 0, 0), (t, "b"): (1, 0, 0), (t, ALL_QUEUES): (2, 0, 0),
        (t + 1, "a"): (0, 1, 1), (t + 1, ALL_QUEUES): (0, 1, 1),
    }
    assert meter.take_stats() == []  # taken once


def test_statistics_the_store_refused_are_kept_for_the_next_try(meter, monkeypatch):
    meter.on_changes([ch("pending", "enqueue")])
    taken = meter.take_stats()
    meter.on_changes([ch("pending", "enqueue", "t2")])
    meter.give_back(taken)
    [b, total] = meter.take_stats()
    assert (b.enqueued, total.enqueued) == (2, 2)
    # bounded: beyond the limit the oldest seconds go
    monkeypatch.setattr(meter_mod, "MAX_PENDING_STATS", 3)
    meter.give_back([StatsBucket(t=t, queue="q", enqueued=1) for t in range(10)])
    assert sorted(b.t for b in meter.take_stats() if b.queue == "q") == [7, 8, 9]


def test_storage_errors_are_counted_wherever_they_are_raised():
    before = StorageUnavailable.raised
    StorageUnavailable("storage: down")
    assert StorageUnavailable.raised == before + 1


def test_histogram_buckets_and_percentiles():
    assert bucket_of(0.0) == 0
    values = [1.0] * 50 + [100.0] * 49 + [5000.0]
    hist: dict[int, int] = {}
    for v in values:
        i = bucket_of(v)
        hist[i] = hist.get(i, 0) + 1
    p50, p99, p100 = percentiles(hist, (0.5, 0.99, 1.0))
    assert p50 == pytest.approx(1.0, rel=0.1)
    assert p99 == pytest.approx(100.0, rel=0.1)
    assert p100 == pytest.approx(5000.0, rel=0.1)
    assert percentiles({}, (0.5,)) == [None]


def _leased(task_id: str, token: str, queue: str = "q", name: str = "job") -> Task:
    return Task(id=task_id, name=name, queue=queue, payload=b"null", created_at=100.0,
                state="processing", lease_token=token, started_at=100.0)


def test_remote_leases_are_measured_from_lease_to_settle(meter):
    meter.remote_leased(_leased("a", "t1"), 100.0)
    meter.remote_leased(_leased("b", "t2"), 100.0)
    meter.remote_leased(_leased("c", "t3"), 100.0)
    meter.remote_settled("a", "t1", 100.3)
    meter.remote_settled("a", "t1", 100.9)  # settled already: not counted twice
    meter.remote_settled("b", "stale", 101.0)  # not the lease this process made
    meter.remote_released("c", "t3")
    meter.remote_settled("c", "t3", 102.0)  # released: ran nothing
    hist = meter.duration[("q", "job")]
    assert sum(hist.counts) == 1
    assert hist.sum == pytest.approx(0.3)


def test_remote_leases_remembered_are_bounded_oldest_first(meter, monkeypatch):
    monkeypatch.setattr(meter_mod, "MAX_REMOTE_LEASES", 2)
    for i in range(3):
        meter.remote_leased(_leased(f"t{i}", "tok"), 100.0)
    for i in range(3):
        meter.remote_settled(f"t{i}", "tok", 101.0)
    assert sum(meter.duration[("q", "job")].counts) == 2  # t0 was forgotten
