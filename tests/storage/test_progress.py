"""report_progress: the latest progress of running tasks, fenced by the
lease token, in batches, without change events."""

from __future__ import annotations

import orjson
import pytest

from tqd.models import PROGRESS_MESSAGE_MAX, ProgressReport, rfc3339

from .helpers import complete, lease_one, put


def report(task, fraction=0.5, message="halfway", at=0.0, token=None):
    return ProgressReport(task.id, token if token is not None else task.lease_token, fraction,
                          message, at)


async def progress_of(storage, task):
    stored = await storage.get(task.id)
    return None if stored.progress is None else orjson.loads(stored.progress)


async def test_a_report_under_the_lease_is_stored(storage, make, clock):
    await put(storage, make())
    leased = await lease_one(storage, clock.now())
    assert await storage.report_progress([report(leased, 0.25, "step 1", clock.now())]) == [True]
    assert await progress_of(storage, leased) == {
        "fraction": 0.25, "message": "step 1", "at": rfc3339(clock.now())
    }


async def test_the_latest_report_wins_and_outlives_the_attempt(storage, make, clock):
    await put(storage, make())
    leased = await lease_one(storage, clock.now())
    await storage.report_progress([report(leased, 0.1, "a")])
    await storage.report_progress([report(leased, 0.9, "b")])
    await storage.settle([complete(leased)], clock.now())
    assert (await progress_of(storage, leased))["fraction"] == 0.9


async def test_stale_tokens_and_idle_tasks_are_refused(storage, make, clock):
    leased_first = make(visibility_timeout=5)
    pending = make()
    await put(storage, leased_first, pending)
    first = await lease_one(storage, clock.now())
    await storage.reclaim_expired(clock.advance(6))
    again = await lease_one(storage, clock.now())
    assert again.id == first.id and again.lease_token != first.lease_token
    results = await storage.report_progress([
        report(first, 0.3, "old lease"),
        report(again, 0.6, "new lease"),
        ProgressReport(pending.id, again.lease_token, 0.5),  # not leased at all
        ProgressReport("0" * 20, again.lease_token, 0.5),  # no such task
        ProgressReport(again.id, "not-a-token", 0.5),
    ])
    assert results == [False, True, False, False, False]
    assert (await progress_of(storage, again))["message"] == "new lease"
    assert await progress_of(storage, pending) is None


async def test_reports_of_several_queues_in_one_call_keep_their_order(storage, make, clock):
    await put(storage, make(queue="a"), make(queue="b"), make(queue="a"))
    leased = [*await storage.lease("a", 2, "w", clock.now()), *await storage.lease("b", 1, "w", clock.now())]
    reports = [report(t, i / 10, f"r{i}") for i, t in enumerate(reversed(leased))]
    assert await storage.report_progress(reports) == [True, True, True]
    for r in reports:
        stored = await storage.get(r.task_id)
        assert orjson.loads(stored.progress)["message"] == r.message


async def test_progress_is_not_a_change_event(storage, make, clock, events):
    await put(storage, make())
    leased = await lease_one(storage, clock.now())
    seen = len(events)
    await storage.report_progress([report(leased)])
    assert len(events) == seen


async def test_bad_fractions_are_refused_and_long_messages_cut(storage, make, clock):
    await put(storage, make())
    leased = await lease_one(storage, clock.now())
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError):
            await storage.report_progress([report(leased, bad)])
    assert await storage.report_progress([report(leased, 1.0, "x" * 5000)]) == [True]
    assert len((await progress_of(storage, leased))["message"]) == PROGRESS_MESSAGE_MAX
    assert await storage.report_progress([]) == []
