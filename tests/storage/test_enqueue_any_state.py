"""enqueue stores a task in any state exactly as given (what ``tqd migrate``
relies on to copy a store), and the stored task then behaves as one that
reached that state by itself."""

from __future__ import annotations

import msgspec
import pytest

from tqd.models import STATES, Task, make_error

from .helpers import assert_counts_exact, counts


def _with_history(make, clock, state: str) -> Task:
    """A task in ``state`` carrying every history field that state can have."""
    now = clock.now()
    t = make(key=f"key-{state}", max_attempts=4)
    errors = [make_error("exception", f"attempt {i} failed", i, now - 50 + i) for i in (1, 2)]
    fields: dict = {
        "state": state, "attempts": 2, "errors": errors, "payload": b'{"x":[1,2]}',
        "priority": 5, "timeout": 12.5, "created_at": now - 100.0,
        "started_at": now - 40.0, "worker": "host:1:abc",
    }
    if state == "scheduled":
        fields |= {"run_at": now + 30.0, "worker": None}
    elif state == "pending":
        fields |= {"worker": None}
    elif state == "processing":
        fields |= {"lease_expires_at": now + 10.0, "lease_token": "tok:q"}
    else:
        fields |= {"finished_at": now - 20.0}
        if state == "completed":
            fields |= {"attempts": 3, "result": b'{"ok":true}'}
    return msgspec.structs.replace(t, **fields)


async def test_a_task_in_any_state_is_stored_as_given(storage, make, clock):
    tasks = [_with_history(make, clock, st) for st in STATES]
    results = await storage.enqueue(tasks)
    assert [r.created for r in results] == [True] * len(STATES)
    for t in tasks:
        assert await storage.get(t.id) == t
    assert await counts(storage) == dict.fromkeys(STATES, 1)
    await assert_counts_exact(storage)
    # its idempotency key is held as for any task
    again = await storage.enqueue([make(key="key-completed")])
    assert not again[0].created and again[0].task.id == tasks[STATES.index("completed")].id


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
async def test_a_stored_finished_task_expires_by_its_finished_at(storage, make, clock, state):
    t = _with_history(make, clock, state)
    await storage.enqueue([t])
    assert await storage.expire_finished(state, t.finished_at, 10) == 0
    assert await storage.expire_finished(state, t.finished_at + 0.001, 10) == 1
    assert await storage.get(t.id) is None


async def test_stored_scheduled_failed_and_processing_tasks_move_on(storage, make, clock):
    scheduled, failed, processing = (
        _with_history(make, clock, st) for st in ("scheduled", "failed", "processing")
    )
    await storage.enqueue([scheduled, failed, processing])
    clock.advance(31.0)
    assert await storage.promote_due(clock.now(), 10) == 1
    assert (await storage.get(scheduled.id)).state == "pending"
    retried = await storage.retry(failed.id, clock.now())
    assert retried.state == "pending" and retried.max_attempts == 2 + 4
    reclaimed = await storage.reclaim_expired(clock.now(), 10)
    assert [t.id for t in reclaimed] == [processing.id]
    assert reclaimed[0].attempts == 3 and reclaimed[0].errors[-1]["kind"] == "lost"
    leased = await storage.lease("q", 10, "w", clock.now())
    assert {t.id for t in leased} == {scheduled.id, failed.id, processing.id}
