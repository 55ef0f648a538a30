"""lease and extend: order, limits, paused queues, tokens, deadlines."""

from __future__ import annotations

from .helpers import complete, counts, lease_one, put, release


async def test_lease_takes_higher_priority_first(storage, make, clock):
    low, mid, high = make(priority=-5), make(priority=0), make(priority=10)
    await put(storage, low, mid, high)
    order = [(await lease_one(storage, clock.now())).id for _ in range(3)]
    assert order == [high.id, mid.id, low.id]


async def test_lease_is_fifo_among_equal_priority(storage, make, clock):
    tasks = make.many(5)
    await put(storage, *tasks)
    order = [(await lease_one(storage, clock.now())).id for _ in range(5)]
    assert order == [t.id for t in tasks]


async def test_a_batch_lease_picks_the_best_tasks(storage, make, clock):
    """A batch holds the tasks a run of single leases would give, in that order."""
    old_low, high1, new_low, high2 = (
        make(priority=1),
        make(priority=9),
        make(priority=1),
        make(priority=9),
    )
    mid = make(priority=5)
    await put(storage, old_low, high1, new_low, high2, mid)
    leased = await storage.lease("q", 4, "w1", clock.now())
    assert [t.id for t in leased] == [high1.id, high2.id, mid.id, old_low.id]
    assert [t.id for t in await storage.lease("q", 4, "w1", clock.now())] == [new_low.id]


async def test_lease_returns_at_most_limit(storage, make, clock):
    await put(storage, *make.many(5))
    assert len(await storage.lease("q", 3, "w1", clock.now())) == 3
    assert len(await storage.lease("q", 3, "w1", clock.now())) == 2
    assert await storage.lease("q", 3, "w1", clock.now()) == []
    assert await counts(storage) == {"processing": 5}


async def test_lease_with_no_room_leases_nothing(storage, make, clock):
    await put(storage, make())
    assert await storage.lease("q", 0, "w1", clock.now()) == []
    assert await counts(storage) == {"pending": 1}


async def test_lease_takes_only_from_its_queue(storage, make, clock):
    mine, other = make(queue="mine"), make(queue="other", priority=100)
    await put(storage, other, mine)
    leased = await storage.lease("mine", 10, "w1", clock.now())
    assert [t.id for t in leased] == [mine.id]
    assert await storage.lease("empty", 10, "w1", clock.now()) == []
    assert await counts(storage, "other") == {"pending": 1}


async def test_a_leased_task_carries_its_lease(storage, make, clock):
    task = make(visibility_timeout=45)
    await put(storage, task)
    now = clock.advance(5)
    leased = await lease_one(storage, now, worker="host-1:42")
    assert leased.state == "processing"
    assert leased.worker == "host-1:42"
    assert leased.started_at == now
    assert leased.lease_expires_at == now + 45
    assert leased.lease_token
    assert leased.attempts == 0
    assert await storage.get(task.id) == leased


async def test_each_task_expires_by_its_own_visibility_timeout(storage, make, clock):
    short, long = make(visibility_timeout=10), make(visibility_timeout=100)
    await put(storage, short, long)
    leased = {t.id: t for t in await storage.lease("q", 2, "w1", clock.now())}
    assert leased[short.id].lease_expires_at == clock.now() + 10
    assert leased[long.id].lease_expires_at == clock.now() + 100


async def test_lease_tokens_are_distinct(storage, make, clock):
    task = make()
    await put(storage, task, *make.many(19))
    leased = await storage.lease("q", 20, "w1", clock.now())
    tokens = [t.lease_token for t in leased]
    assert len(set(tokens)) == 20
    # The same task leased again gets a token it never had.
    first = next(t for t in leased if t.id == task.id)
    await storage.settle([release(first)], clock.now())
    again = await lease_one(storage, clock.now())
    assert again.id == task.id
    assert again.lease_token not in tokens


async def test_a_paused_queue_leases_nothing_until_resumed(storage, make, clock):
    task = make()
    await put(storage, task)
    info = await storage.set_paused("q", True)
    assert info.paused is True
    assert await storage.lease("q", 10, "w1", clock.now()) == []
    assert await counts(storage) == {"pending": 1}
    info = await storage.set_paused("q", False)
    assert info.paused is False
    assert [t.id for t in await storage.lease("q", 10, "w1", clock.now())] == [task.id]


async def test_pausing_one_queue_leaves_others_alone(storage, make, clock):
    await put(storage, make(queue="a"), make(queue="b"))
    await storage.set_paused("a", True)
    assert await storage.lease("a", 10, "w1", clock.now()) == []
    assert len(await storage.lease("b", 10, "w1", clock.now())) == 1


async def test_extend_moves_the_deadline(storage, make, clock):
    await put(storage, make(visibility_timeout=30))
    task = await lease_one(storage, clock.now())
    later = clock.advance(20)
    assert await storage.extend([(task.id, task.lease_token)], later) == [True]
    stored = await storage.get(task.id)
    assert stored.lease_expires_at == later + 30
    assert stored.lease_token == task.lease_token
    assert stored.state == "processing"


async def test_extend_refuses_a_stale_token(storage, make, clock):
    await put(storage, make())
    task = await lease_one(storage, clock.now())
    later = clock.advance(10)
    assert await storage.extend([(task.id, "not-the-token")], later) == [False]
    assert (await storage.get(task.id)).lease_expires_at == task.lease_expires_at


async def test_extend_answers_each_lease_in_order(storage, make, clock):
    await put(storage, *make.many(3))
    a, b, c = await storage.lease("q", 3, "w1", clock.now())
    assert await storage.settle([complete(b)], clock.now()) == [True]
    answers = await storage.extend(
        [(a.id, a.lease_token), (b.id, b.lease_token), ("missing-id", "x"), (c.id, c.lease_token)],
        clock.advance(1),
    )
    assert answers == [True, False, False, True]


async def test_extend_of_nothing_is_nothing(storage):
    assert await storage.extend([], 0.0) == []
