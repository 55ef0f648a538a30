"""The pull API's long-poll lease under queue limits: when a limit holds every
task back, the request waits for what lifts it (a task leaving processing, the
rate bucket's next token) and leases again within its ``wait``, without
spinning on the store.

The QueueWatch tests need nothing of the store; the daemon tests need the
backend's limits (issue 8).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.helpers.waiting import eventually
from tqd.api.remote import WAKE_PENDING, WAKE_QUEUE, QueueWatch
from tqd.models import Change, QueueChange

# -- QueueWatch: which changes wake which wait ------------------------------------


async def test_a_new_watch_wakes_on_any_change_but_a_start() -> None:
    watch = QueueWatch()
    fut = watch.watch("q")
    watch.on_changes([Change("t1", "q", "n", "processing"), Change("t2", "other", "n", "completed")])
    assert not fut.done()
    watch.on_changes([Change("t1", "q", "n", "completed")])
    assert fut.done()


async def test_waiting_for_pending_ignores_finished_tasks() -> None:
    watch = QueueWatch()
    fut = watch.watch("q")
    watch.narrow("q", fut, WAKE_PENDING)
    watch.on_changes([Change("t1", "q", "n", "completed"), QueueChange("q", "paused")])
    assert not fut.done()
    watch.on_changes([Change("t2", "q", "n", "pending")])
    assert fut.done()


async def test_waiting_for_a_rate_token_wakes_only_on_the_queue_itself() -> None:
    watch = QueueWatch()
    fut = watch.watch("q")
    watch.narrow("q", fut, WAKE_QUEUE)
    watch.on_changes([Change("t1", "q", "n", "pending"), Change("t2", "q", "n", "completed")])
    assert not fut.done()
    watch.on_changes([QueueChange("q", "limits")])
    assert fut.done()
    other = watch.watch("q")
    watch.narrow("q", other, WAKE_QUEUE)
    watch.on_changes([QueueChange("q", "resumed")])
    assert other.done()
    watch.forget("q", fut)
    watch.forget("q", other)
    watch.on_changes([QueueChange("q", "limits")])  # nothing left to wake


# -- a daemon: the long poll under a limit -------------------------------------------

REMOTE = {"job": {"handler": {"kind": "remote"}, "queue": "pull"}}


class LeaseCounter:
    """Counts the store's leases of one queue (a spinning wait would show)."""

    def __init__(self, daemon: Any, queue: str) -> None:
        self.calls = 0
        store = daemon.storage
        original = store.lease

        async def counted(q: str, *args: Any, **kwargs: Any) -> Any:
            if q == queue:
                self.calls += 1
            return await original(q, *args, **kwargs)

        store.lease = counted


async def _json(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
    async with http.request(method, path, json=body) as r:
        answer = await r.json()
        assert r.status in (200, 201), answer
        return answer


async def test_a_wait_held_back_by_concurrency_leases_when_a_task_finishes(start_tqd) -> None:
    daemon = await start_tqd(tasks=REMOTE)
    counter = LeaseCounter(daemon, "pull")
    async with aiohttp.ClientSession(base_url=daemon.url) as http:
        await _json(http, "PATCH", "/v1/queues/pull", {"concurrency": 1})
        for n in range(2):
            await _json(http, "POST", "/v1/tasks", {"name": "job", "payload": n})
        first = (await _json(http, "POST", "/v1/queues/pull/lease", {"max": 2}))["tasks"]
        assert len(first) == 1  # the limit cut the lease short

        before = counter.calls
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiting = asyncio.create_task(
            _json(http, "POST", "/v1/queues/pull/lease", {"max": 2, "wait": 20}))
        await eventually(lambda: counter.calls > before, message="the waiting lease's first try")
        assert not waiting.done()
        done = first[0]
        await _json(http, "POST", f"/v1/tasks/{done['id']}/complete",
                    {"token": done["lease"]["token"], "result": None})
        second = (await asyncio.wait_for(waiting, 15))["tasks"]
        assert [t["payload"] for t in second] == [1 - done["payload"]]
        assert loop.time() - started < 15
        # Woken by the completion, not by polling: a handful of leases at most.
        assert counter.calls - before <= 4, counter.calls - before


async def test_a_wait_held_back_by_the_rate_leases_at_the_next_token(start_tqd) -> None:
    daemon = await start_tqd(tasks=REMOTE)
    counter = LeaseCounter(daemon, "pull")
    async with aiohttp.ClientSession(base_url=daemon.url) as http:
        await _json(http, "PATCH", "/v1/queues/pull", {"rate_limit": 1, "rate_interval": 1.0})
        for n in range(2):
            await _json(http, "POST", "/v1/tasks", {"name": "job", "payload": n})
        first = (await _json(http, "POST", "/v1/queues/pull/lease", {"max": 2}))["tasks"]
        assert len(first) == 1  # one token in the bucket

        before = counter.calls
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await _json(http, "POST", "/v1/queues/pull/lease", {"max": 2, "wait": 20})
        took = loop.time() - started
        assert len(answer["tasks"]) == 1, answer
        # The next token comes about a second after the first lease; the
        # answer waits for it, not for the end of the wait.
        assert took < 10, took
        assert counter.calls - before <= 6, counter.calls - before
