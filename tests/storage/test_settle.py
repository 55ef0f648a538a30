"""settle: complete, fail (retry or dead), release; fencing; attempt counting."""

from __future__ import annotations

import msgspec
import pytest

from tqd.models import ERROR_HISTORY, Outcome

from .helpers import complete, counts, fail, lease_one, put, release


async def test_complete_stores_the_result(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    now = clock.advance(3)
    assert await storage.settle([complete(task, b'{"n":1}')], now) == [True]
    done = await storage.get(task.id)
    assert done.state == "completed"
    assert done.result == b'{"n":1}'
    assert done.finished_at == now
    assert done.attempts == 1
    assert done.lease_token is None
    assert done.lease_expires_at is None
    assert done.errors == []
    assert await counts(storage) == {"completed": 1}


async def test_fail_with_retry_at_schedules_the_next_attempt(storage, make, clock):
    await put(storage, make(max_attempts=5))
    task = await lease_one(storage, clock.now())
    now = clock.advance(1)
    assert await storage.settle([fail(task, retry_at=now + 10, message="first", at=now)], now) == [
        True
    ]
    stored = await storage.get(task.id)
    assert stored.state == "scheduled"
    assert stored.run_at == now + 10
    assert stored.attempts == 1
    assert stored.lease_token is None
    assert stored.finished_at is None
    assert [(e["attempt"], e["message"]) for e in stored.errors] == [(1, "first")]
    assert await counts(storage) == {"scheduled": 1}
    assert await storage.lease("q", 1, "w1", now) == []


async def test_the_error_history_numbers_each_attempt(storage, make, clock):
    await put(storage, make(max_attempts=5))
    for n in range(1, 4):
        task = await lease_one(storage, clock.now())
        assert task.attempt == n
        now = clock.advance(1)
        await storage.settle([fail(task, retry_at=now, message=f"try {n}", at=now)], now)
        assert await storage.promote_due(now) == 1
    stored = await storage.get(task.id)
    assert stored.attempts == 3
    assert [e["attempt"] for e in stored.errors] == [1, 2, 3]
    assert stored.error["message"] == "try 3"


async def test_the_error_history_keeps_the_newest_errors(storage, make, clock):
    await put(storage, make(max_attempts=ERROR_HISTORY + 10))
    for _ in range(ERROR_HISTORY + 3):
        task = await lease_one(storage, clock.now())
        await storage.settle([fail(task, retry_at=clock.now())], clock.now())
        await storage.promote_due(clock.now())
    stored = await storage.get(task.id)
    assert stored.attempts == ERROR_HISTORY + 3
    assert len(stored.errors) == ERROR_HISTORY
    assert stored.errors[-1]["attempt"] == ERROR_HISTORY + 3
    assert stored.errors[0]["attempt"] == 4


async def test_fail_without_retry_at_is_dead(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    now = clock.advance(2)
    assert await storage.settle([fail(task, message="fatal", at=now)], now) == [True]
    dead = await storage.get(task.id)
    assert dead.state == "failed"
    assert dead.finished_at == now
    assert dead.attempts == 1
    assert dead.lease_token is None
    assert dead.error["attempt"] == 1
    assert dead.error["message"] == "fatal"
    assert await counts(storage) == {"failed": 1}


async def test_release_hands_the_task_back_without_counting(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    assert await storage.settle([release(task)], clock.now()) == [True]
    back = await storage.get(task.id)
    assert back.state == "pending"
    assert back.attempts == 0
    assert back.lease_token is None
    assert back.lease_expires_at is None
    assert back.worker is None
    assert back.errors == []
    assert await counts(storage) == {"pending": 1}
    assert (await lease_one(storage, clock.now(), worker="w2")).id == task.id


@pytest.mark.parametrize("kind", ["complete", "fail", "fail-retry", "release"])
async def test_a_stale_token_is_refused_and_changes_nothing(storage, make, clock, kind):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    outcome = {
        "complete": complete(task),
        "fail": fail(task),
        "fail-retry": fail(task, retry_at=clock.now() + 5),
        "release": release(task),
    }[kind]
    outcome.token = "stale"
    before = await storage.get(task.id)
    assert await storage.settle([outcome], clock.advance(1)) == [False]
    assert await storage.get(task.id) == before
    assert await counts(storage) == {"processing": 1}


async def test_a_task_is_settled_only_once(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    assert await storage.settle([complete(task, b"1")], clock.now()) == [True]
    assert await storage.settle([complete(task, b"2")], clock.now()) == [False]
    assert await storage.settle([fail(task)], clock.now()) == [False]
    assert await storage.extend([(task.id, task.lease_token)], clock.now()) == [False]
    done = await storage.get(task.id)
    assert done.result == b"1"
    assert done.attempts == 1
    assert done.state == "completed"


async def test_the_holder_of_a_reclaimed_lease_cannot_settle(storage, make, clock):
    """Fencing: once reclaimed and leased again, only the new token counts."""
    await put(storage, make(visibility_timeout=10))
    old = await lease_one(storage, clock.now(), worker="slow")
    clock.advance(11)
    assert [t.id for t in await storage.reclaim_expired(clock.now())] == [old.id]
    new = await lease_one(storage, clock.now(), worker="fresh")
    assert new.lease_token != old.lease_token
    assert await storage.extend([(old.id, old.lease_token)], clock.now()) == [False]
    assert await storage.settle([complete(old, b'"old"')], clock.now()) == [False]
    assert await storage.settle([fail(old)], clock.now()) == [False]
    assert (await storage.get(old.id)).lease_token == new.lease_token
    assert await storage.settle([complete(new, b'"new"')], clock.now()) == [True]
    done = await storage.get(new.id)
    assert done.result == b'"new"'
    assert done.attempts == 2  # the lost attempt and the one that completed


async def test_the_holder_of_an_expired_lease_can_settle_before_reclaim(storage, make, clock):
    """A deadline alone revokes nothing; the reclaim does."""
    await put(storage, make(visibility_timeout=10))
    task = await lease_one(storage, clock.now())
    clock.advance(60)
    assert await storage.settle([complete(task)], clock.now()) == [True]
    assert await storage.reclaim_expired(clock.now()) == []
    assert (await storage.get(task.id)).state == "completed"


async def test_a_batch_of_outcomes_is_answered_in_order(storage, make, clock):
    await put(storage, *make.many(4))
    a, b, c, d = await storage.lease("q", 4, "w1", clock.now())
    stale = release(d)
    stale.token = "stale"
    missing = Outcome(task_id="0" * 20, token="x", kind="complete")
    answers = await storage.settle(
        [complete(a), missing, fail(b), stale, fail(c, retry_at=clock.now() + 1)], clock.now()
    )
    assert answers == [True, False, True, False, True]
    states = [(await storage.get(t.id)).state for t in (a, b, c, d)]
    assert states == ["completed", "failed", "scheduled", "processing"]
    assert await counts(storage) == {"completed": 1, "failed": 1, "scheduled": 1, "processing": 1}


async def test_an_unknown_outcome_kind_is_refused(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    with pytest.raises(ValueError):
        await storage.settle(
            [Outcome(task_id=task.id, token=task.lease_token, kind="explode")], clock.now()
        )
    assert (await storage.get(task.id)).state == "processing"


async def test_settle_of_nothing_is_nothing(storage):
    assert await storage.settle([], 0.0) == []


async def test_attempts_count_ended_attempts_and_never_decrease(storage, make, clock):
    """Through fail-retry, release, a lost lease, cancel, retry and completion."""
    task = make(max_attempts=3, visibility_timeout=10)
    await put(storage, task)
    seen = []

    async def note():
        seen.append((await storage.get(task.id)).attempts)

    leased = await lease_one(storage, clock.now())
    await note()  # 0: the first attempt is running, none ended
    await storage.settle([fail(leased, retry_at=clock.now())], clock.now())
    await note()  # 1
    await storage.promote_due(clock.now())
    leased = await lease_one(storage, clock.now())
    await storage.settle([release(leased)], clock.now())
    await note()  # 1: a release is no attempt
    await lease_one(storage, clock.now())
    await storage.reclaim_expired(clock.advance(11))
    await note()  # 2: the lost attempt counts
    leased = await lease_one(storage, clock.now())
    await storage.settle([fail(leased)], clock.now())
    await note()  # 3, failed: attempts exhausted
    await storage.retry(task.id, clock.now())
    await note()  # 3: a retry grants attempts, it does not take any back
    leased = await lease_one(storage, clock.now())
    await storage.settle([complete(leased)], clock.now())
    await note()  # 4
    assert seen == [0, 1, 1, 2, 3, 3, 4]


def _known(task, result=None, started_at=None) -> Outcome:
    """A completion as the pool sends it: queue and name known (the stores'
    batched path)."""
    return Outcome(task_id=task.id, token=task.lease_token, kind="complete", result=result,
                   queue=task.queue, name=task.name, started_at=started_at)


@pytest.mark.parametrize("stale", [False, True])
async def test_a_batch_of_known_completions_stores_each_exactly(storage, make, clock, stale):
    # Results, started_at and no result at all, in one batch; with a stale
    # token among them the store must fall back and still settle the rest.
    await put(storage, *make.many(4))
    leased = await storage.lease("q", 4, "w", clock.now())
    now = clock.advance(2)
    outcomes = [
        _known(leased[0], b'{"k":"caf\\u00e9 \\"q\\" \\\\"}', 1_764_338_400.123457),
        _known(leased[1], '"ü 😀"'.encode()),
        _known(leased[2]),
        _known(leased[3], b"[1,2.5,null]", 1_764_338_401.000001),
    ]
    if stale:
        outcomes[2] = Outcome(task_id=leased[2].id, token="not-its-token", kind="complete",
                              queue="q", name=leased[2].name)
    assert await storage.settle(outcomes, now) == [True, True, not stale, True]
    got = [await storage.get(t.id) for t in leased]
    assert [t.result for t in got] == [outcomes[0].result, outcomes[1].result, None,
                                       outcomes[3].result]
    assert got[0].started_at == 1_764_338_400.123457 and got[3].started_at == 1_764_338_401.000001
    assert got[1].started_at == leased[1].started_at  # kept when not given
    assert [t.state for t in got] == ["completed", "completed",
                                      "processing" if stale else "completed", "completed"]
    assert all(t.finished_at == now for t in got if t.state == "completed")
    assert await counts(storage) == ({"completed": 3, "processing": 1} if stale else {"completed": 4})


async def test_the_same_task_twice_in_a_batch_settles_once(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    assert await storage.settle([_known(task, b"1"), _known(task, b"2")], clock.now()) == [True, False]
    assert (await storage.get(task.id)).result == b"1"
    assert await counts(storage) == {"completed": 1}


async def test_a_failure_records_when_its_handler_began(storage, make, clock):
    await put(storage, *make.many(2))
    leased = await storage.lease("q", 2, "w", clock.now())
    began = clock.now() + 0.25
    outcomes = [fail(t) for t in leased]
    outcomes = [msgspec.structs.replace(o, started_at=began) for o in outcomes]
    outcomes[0] = msgspec.structs.replace(outcomes[0], retry_at=clock.now() + 60)
    assert await storage.settle(outcomes, clock.now() + 1) == [True, True]
    assert [(await storage.get(t.id)).started_at for t in leased] == [began, began]
