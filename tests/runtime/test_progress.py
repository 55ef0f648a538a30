"""Progress reports: python handlers (async and sync in a thread) report
through their context; the writer coalesces them per task and writes them
in batches under the lease token, on a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tests.helpers.aio import until
from tests.storage.helpers import TaskMaker, put
from tqd.clock import SystemClock
from tqd.config import load_config
from tqd.runtime.catalog import Catalog, NewTask
from tqd.runtime.handlers import build_handlers
from tqd.runtime.pool import PoolSettings, WorkerPool
from tqd.runtime.progress import ProgressWriter
from tqd.storage.sqlite import SqliteStorage

PYMODS = Path(__file__).parent / "pymods"


def progress_of(task) -> dict | None:
    return None if task.progress is None else orjson.loads(task.progress)


class Counting(SqliteStorage):
    """The SQLite store, counting report_progress round trips."""

    calls = 0

    async def _report_progress(self, reports):
        self.calls += 1
        return await super()._report_progress(reports)


@pytest.fixture
async def counted(tmp_path) -> Counting:
    s = Counting(str(tmp_path / "c.db"))
    await s.open()
    yield s
    await s.close()


async def start_pool(store, tmp_path, interval: float) -> tuple[WorkerPool, ProgressWriter, Catalog]:
    config = load_config(None, env={}, overrides={
        "storage": f"sqlite://{tmp_path / 'c.db'}",
        "python_path": [str(PYMODS)],
        "tasks": {
            name: {"handler": f"tqd_progress_probe:{name}", "max_attempts": 1}
            for name in ("steps_async", "steps_sync", "hold_async", "bad_fraction")
        },
    })
    catalog = Catalog(config)
    writer = ProgressWriter(store, SystemClock(), interval)
    writer.start()
    pool = WorkerPool(store, catalog, build_handlers(catalog, config),
                      PoolSettings(worker_id="w-progress", concurrency=20), SystemClock(), writer)
    await pool.start()
    return pool, writer, catalog


async def run_to_end(store, catalog, name: str, payload: dict) -> object:
    task = catalog.build(NewTask(name=name, payload=orjson.dumps(payload)), SystemClock().now())
    await store.enqueue([task])

    async def finished():
        t = await store.get(task.id)
        return t if t.state in ("completed", "failed") else None

    return await until(finished, message=f"{name} finished")


@pytest.mark.parametrize("name", ["steps_async", "steps_sync"])
async def test_a_chatty_handler_costs_a_few_writes_and_its_last_report_is_kept(
    counted, tmp_path, name
):
    """10,000 reports, of which the store sees a handful of writes; the last
    one ("done", reported right before returning) is written before the
    task is settled, though the next regular write is a minute away."""
    pool, writer, catalog = await start_pool(counted, tmp_path, interval=60.0)
    try:
        done = await run_to_end(counted, catalog, name, {"n": 10_000})
        assert done.state == "completed"
        p = progress_of(done)
        assert (p["fraction"], p["message"]) == (1.0, "done")
        assert p["at"].endswith("Z")
        assert counted.calls <= 3, counted.calls
    finally:
        await pool.stop(1.0)
        await writer.close()


async def test_reports_of_many_tasks_share_one_write(counted, tmp_path):
    pool, writer, catalog = await start_pool(counted, tmp_path, interval=0.2)
    import tqd_progress_probe as probe  # loaded through python_path by the pool

    probe.release = asyncio.Event()
    probe.reported.clear()
    try:
        tasks = [catalog.build(NewTask(name="hold_async"), SystemClock().now()) for _ in range(10)]
        await counted.enqueue(tasks)
        await until(lambda: len(probe.reported) == 10, message="ten reports")

        async def all_written():
            return all([progress_of(await counted.get(t.id)) for t in tasks])

        await until(all_written, message="progress of all ten stored")
        # The first report went at once; the nine others waited for the next write.
        assert counted.calls <= 3, counted.calls
        stored = await counted.get(tasks[0].id)
        assert stored.state == "processing"
        assert progress_of(stored)["message"] == "halfway"
    finally:
        probe.release.set()
        await pool.stop(5.0)
        await writer.close()


async def test_a_bad_fraction_fails_the_attempt_with_a_clear_message(store, tmp_path):
    pool, writer, catalog = await start_pool(store, tmp_path, interval=0.1)
    try:
        done = await run_to_end(store, catalog, "bad_fraction", {"fraction": 1.5})
        assert done.state == "failed"
        assert "progress must be a number from 0 to 1, got 1.5" in done.error["message"]
        assert done.progress is None
    finally:
        await pool.stop(1.0)
        await writer.close()


async def test_submit_answers_whether_the_token_held(store, clock):
    make = TaskMaker(clock)
    await put(store, make(), make())
    a, b = await store.lease("q", 2, "w", clock.now())
    writer = ProgressWriter(store, clock, interval=0.05)
    writer.start()
    try:
        ok, stale, also_ok = await asyncio.gather(
            writer.submit(a.id, a.lease_token, 0.5, "a"),
            writer.submit(b.id, "stale", 0.5, "b"),
            writer.submit(b.id, b.lease_token, 0.7, "b"),
        )
        assert (ok, stale, also_ok) == (True, False, True)
        assert progress_of(await store.get(b.id))["fraction"] == 0.7
    finally:
        await writer.close()


async def test_pending_reports_are_written_at_close(store, clock):
    make = TaskMaker(clock)
    await put(store, make())
    [a] = await store.lease("q", 1, "w", clock.now())
    writer = ProgressWriter(store, clock, interval=3600)
    writer.start()
    writer.report(a.id, a.lease_token, 0.1, "first")
    await until(lambda: writer.writes == 1, message="first write")
    writer.report(a.id, a.lease_token, 0.2, "second")  # waits for the next interval
    assert writer.pending_for([a.id])
    await writer.close()
    assert progress_of(await store.get(a.id))["message"] == "second"
    # a writer that is not running writes a submitted report at once
    assert await writer.submit(a.id, a.lease_token, 0.3, "late") is True


async def test_the_store_being_down_keeps_the_latest_report(store, clock):
    make = TaskMaker(clock)
    await put(store, make())
    [a] = await store.lease("q", 1, "w", clock.now())

    class Down:
        async def report_progress(self, reports):
            from tqd.errors import StorageUnavailable

            raise StorageUnavailable("storage: down")

    writer = ProgressWriter(Down(), clock, interval=0.01)  # type: ignore[arg-type]
    writer.report(a.id, a.lease_token, 0.4, "kept")
    await writer.flush()  # logged, not raised
    assert writer.pending_for([a.id])
    writer._storage = store
    await writer.flush()
    assert progress_of(await store.get(a.id))["message"] == "kept"


async def test_a_report_being_written_counts_as_pending(clock):
    """The pool flushes before a settle; a write already on its way must be
    waited for too, or the settle could overtake it."""
    gate = asyncio.Event()
    written: list = []

    class Slow:
        async def report_progress(self, reports):
            await gate.wait()
            written.extend(reports)
            return [True] * len(reports)

    writer = ProgressWriter(Slow(), clock, interval=0.01)  # type: ignore[arg-type]
    writer.report("a", "t", 0.5)
    in_flight = asyncio.create_task(writer.flush())
    await until(lambda: not writer._pending, message="the write started")
    assert writer.pending_for(["a"]) and not writer.pending_for(["b"])
    flushed = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.01)
    assert not flushed.done()  # waits for the write in flight
    gate.set()
    await in_flight
    await flushed
    assert [r.task_id for r in written] == ["a"] and not writer.pending_for(["a"])


async def test_over_the_cap_the_oldest_unawaited_report_goes(clock, monkeypatch):
    import tqd.runtime.progress as progress

    monkeypatch.setattr(progress, "MAX_PENDING", 3)
    stored: list = []

    class Store:
        async def report_progress(self, reports):
            stored.extend(r.task_id for r in reports)
            return [True] * len(reports)

    writer = ProgressWriter(Store(), clock)  # type: ignore[arg-type]
    waiting = asyncio.create_task(writer.submit("kept", "t", 0.1))  # not started: writes at once
    await waiting
    writer._job = asyncio.create_task(asyncio.sleep(3600))  # pretend the loop runs
    try:
        waiter = asyncio.create_task(writer.submit("awaited", "t", 0.1))
        await asyncio.sleep(0)
        for name in ("b", "c", "d"):
            writer.report(name, "t", 0.2)
        await writer.flush()
        assert await waiter is True
        assert stored == ["kept", "awaited", "c", "d"]  # "b" went to make room
    finally:
        writer._job.cancel()
