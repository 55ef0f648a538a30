"""A shared store may report a task's enqueue after the pool already leased
it (the answers come on different connections): that late ``pending`` change
must not stop the handler, while a real reclaim still does."""

from __future__ import annotations

from tests.helpers.aio import until
from tests.runtime.kit import Blocker, pool_with
from tests.storage.helpers import TaskMaker
from tqd.clock import FakeClock
from tqd.models import Change
from tqd.storage.sqlite import SqliteStorage


async def test_a_late_pending_echo_of_a_running_task_is_ignored(
    store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    blocker = Blocker()
    pool = pool_with(store, clock, {"block": blocker}, concurrency=2)
    task = make("block", queue="q", visibility_timeout=30)
    await store.enqueue([task])
    await pool.start()
    try:
        await until(lambda: len(blocker.started) == 1, message="running")
        store._emit([Change(task.id, "q", "block", "pending")])  # the enqueue's late echo
        # a lease check is a read: once a later read has been answered, the
        # check has been too
        await store.get(task.id)
        await until(lambda: not getattr(pool, "_checks", ()), message="lease checked")
        assert task.id not in blocker.ended
        blocker.release.set()

        async def completed() -> bool:
            stored = await store.get(task.id)
            return stored is not None and stored.state == "completed"

        await until(completed, message="settled by the run that was not stopped")
    finally:
        blocker.release.set()
        await pool.stop(0)
