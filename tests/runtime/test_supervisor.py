"""The supervisor, table-driven: seed leases → run_once(now) → expect states.

Each seeded task sits in its own queue and is leased at ``T0`` with a
visibility timeout chosen so that its lease runs out ``expires_in`` seconds
after the ``now`` the round is run with (negative: already expired).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.storage.helpers import TaskMaker, complete
from tqd.clock import FakeClock
from tqd.runtime.supervisor import Supervisor
from tqd.storage.base import BULK_CHUNK
from tqd.storage.sqlite import SqliteStorage

#: Seconds between the leases and the supervisor's round.
HORIZON = 100.0


@dataclass
class Lease:
    """A task leased by worker ``w-dead`` whose lease ends ``expires_in`` s after now."""

    label: str
    expires_in: float
    attempts: int = 0
    max_attempts: int = 3


@dataclass
class Want:
    state: str
    attempts: int
    #: Kind of the last error, or None for no error at all.
    error: str | None = None


@dataclass
class Case:
    name: str
    seed: list[Lease]
    want: dict[str, Want] = field(default_factory=dict)


CASES = [
    Case("nothing leased: nothing to do", [], {}),
    Case(
        "expired lease with attempts left goes back to pending",
        [Lease("a", expires_in=-1)],
        {"a": Want("pending", 1, "lost")},
    ),
    Case(
        "expired lease on the last attempt ends failed with a lost error",
        [Lease("a", expires_in=-5, attempts=2, max_attempts=3)],
        {"a": Want("failed", 3, "lost")},
    ),
    Case(
        "a single-attempt task whose worker died is failed at once",
        [Lease("a", expires_in=-0.001, max_attempts=1)],
        {"a": Want("failed", 1, "lost")},
    ),
    Case(
        "unexpired lease is untouched",
        [Lease("a", expires_in=1)],
        {"a": Want("processing", 0)},
    ),
    Case(
        "a lease ending exactly now is still held",
        [Lease("a", expires_in=0)],
        {"a": Want("processing", 0)},
    ),
    Case(
        "a mix: only the expired ones are taken back",
        [
            Lease("old", expires_in=-60),
            Lease("last", expires_in=-1, attempts=4, max_attempts=5),
            Lease("fresh", expires_in=20),
            Lease("young", expires_in=0.5, attempts=2, max_attempts=3),
        ],
        {
            "old": Want("pending", 1, "lost"),
            "last": Want("failed", 5, "lost"),
            "fresh": Want("processing", 0),
            "young": Want("processing", 2),
        },
    ),
]


async def _seed(store: SqliteStorage, make: TaskMaker, clock: FakeClock, seed: list[Lease]) -> dict:
    """Enqueue and lease every seeded task at the clock's now; return label → task."""
    leased = {}
    for lease in seed:
        task = make(
            queue=f"q-{lease.label}",
            max_attempts=lease.max_attempts,
            visibility_timeout=HORIZON + lease.expires_in,
        )
        task.attempts = lease.attempts
        await store.enqueue([task])
        (got,) = await store.lease(task.queue, 1, "w-dead", clock.now())
        leased[lease.label] = got
    return leased


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_supervisor_round(
    case: Case, store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    leased = await _seed(store, make, clock, case.seed)
    now = clock.now() + HORIZON
    supervisor = Supervisor(store, clock)

    assert await supervisor.run_once(now) is None  # runs again at its interval

    taken_back = sum(1 for w in case.want.values() if w.state != "processing")
    assert supervisor.reclaimed_total == taken_back
    for label, want in case.want.items():
        before = leased[label]
        task = await store.get(before.id)
        assert task is not None
        assert (task.state, task.attempts) == (want.state, want.attempts), label
        if want.error is None:
            assert task.errors == []
            assert task.lease_token == before.lease_token
            assert task.lease_expires_at == before.lease_expires_at
            assert task.worker == "w-dead"
        else:
            assert task.error is not None
            assert task.error["kind"] == want.error
            assert task.error["attempt"] == want.attempts
            assert "w-dead" in task.error["message"]
            assert task.lease_token is None and task.lease_expires_at is None
            assert task.worker is None
            assert (task.finished_at == now) == (want.state == "failed")


async def test_reclaimed_leases_are_fenced(
    store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    """After a reclaim the dead worker's token settles nothing, and the task
    is leased again under a new token."""
    (old,) = (await _seed(store, make, clock, [Lease("a", expires_in=-1)])).values()
    await Supervisor(store, clock).run_once(clock.now() + HORIZON)
    assert await store.settle([complete(old)], clock.now() + HORIZON) == [False]
    (again,) = await store.lease(old.queue, 1, "w-new", clock.now() + HORIZON)
    assert again.id == old.id and again.lease_token != old.lease_token


async def test_more_expired_leases_than_one_chunk(
    store: SqliteStorage, make: TaskMaker, clock: FakeClock
) -> None:
    """One round takes back every expired lease, also beyond one bulk chunk."""
    n = BULK_CHUNK + 3
    await store.enqueue(make.many(n, queue="big", visibility_timeout=10))
    assert len(await store.lease("big", n, "w-dead", clock.now())) == n
    supervisor = Supervisor(store, clock)
    await supervisor.run_once(clock.now() + 11)
    assert supervisor.reclaimed_total == n
    info = await store.queue("big")
    assert info.counts["pending"] == n and info.counts["processing"] == 0
