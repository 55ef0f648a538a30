"""list: newest first, filters, cursor paging, bad arguments."""

from __future__ import annotations

import itertools

import pytest

from tqd.errors import BadRequest

from .helpers import all_tasks, complete, fail, put


async def _mixed(storage, make, clock):
    """Twenty-four tasks over two queues, two names and four states; returns
    them oldest first as they are now stored."""
    kinds = itertools.cycle([("a", "send"), ("b", "send"), ("a", "resize"), ("b", "resize")])
    tasks = []
    for _ in range(24):
        queue, name = next(kinds)
        tasks.append(make(name, queue))
        clock.advance(0.001)
    await put(storage, *tasks)
    # Lease a third of each queue, then settle some of those leases.
    for queue in ("a", "b"):
        leased = await storage.lease(queue, 4, "w1", clock.now())
        await storage.settle([complete(leased[0]), fail(leased[1])], clock.now())
    return [await storage.get(t.id) for t in tasks]


async def test_list_is_newest_first(storage, make, clock):
    tasks = []
    for _ in range(5):
        tasks.append(make())
        clock.advance(1)
    await put(storage, *tasks)
    page = await storage.list()
    assert [t.id for t in page.tasks] == [t.id for t in reversed(tasks)]
    assert page.next_cursor is None
    assert page.tasks[0] == tasks[-1]


async def test_list_of_an_empty_store(storage):
    assert await storage.list() == ([], None)
    assert await storage.list(state="pending", queue="q") == ([], None)


FILTERS = [
    {},
    {"state": "pending"},
    {"state": "processing"},
    {"state": "failed"},
    {"queue": "a"},
    {"name": "resize"},
    {"queue": "b", "state": "pending"},
    {"queue": "a", "state": "completed"},
    {"name": "send", "state": "processing"},
    {"queue": "a", "name": "send"},
    {"queue": "a", "name": "send", "state": "pending"},
    {"queue": "nope"},
    {"state": "cancelled"},
]


@pytest.mark.parametrize(
    "filters", FILTERS, ids=lambda f: "+".join(f"{k}={v}" for k, v in f.items()) or "all"
)
async def test_each_filter_pages_through_its_tasks_exactly_once(storage, make, clock, filters):
    stored = await _mixed(storage, make, clock)
    expected = [
        t.id
        for t in reversed(stored)
        if all(getattr(t, field) == value for field, value in filters.items())
    ]
    for limit in (1, 5, 100):
        seen, cursor, pages = [], None, 0
        while True:
            page = await storage.list(limit=limit, cursor=cursor, **filters)
            assert len(page.tasks) <= limit
            seen.extend(t.id for t in page.tasks)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
            assert pages <= len(stored) + 1, "paging does not end"
        assert seen == expected, (limit, filters)


async def test_the_sample_covers_every_filter(storage, make, clock):
    """Guards the test above against filters that match nothing by accident."""
    stored = await _mixed(storage, make, clock)
    assert {t.state for t in stored} == {"pending", "processing", "completed", "failed"}
    for filters in FILTERS[:-2]:
        assert await all_tasks(storage, **filters), filters


async def test_paging_is_stable_while_new_tasks_arrive(storage, make):
    first = [make() for _ in range(6)]
    await put(storage, *first)
    page1 = await storage.list(limit=3)
    await put(storage, *make.many(4))
    page2 = await storage.list(limit=3, cursor=page1.next_cursor)
    got = [t.id for t in page1.tasks + page2.tasks]
    assert got == [t.id for t in reversed(first)]
    assert page2.next_cursor is None  # the last page, even though it is full


async def test_a_page_reflects_the_current_state(storage, make, clock):
    task = make()
    await put(storage, task)
    await storage.lease("q", 1, "w1", clock.now())
    [listed] = (await storage.list(state="processing")).tasks
    assert listed == await storage.get(task.id)
    assert (await storage.list(state="pending")).tasks == []


@pytest.mark.parametrize("cursor", ["garbage", "", "-", "1.5e", "-5", "9" * 30])
async def test_a_malformed_cursor_is_a_bad_request(storage, make, cursor):
    await put(storage, make())
    with pytest.raises(BadRequest):
        await storage.list(cursor=cursor)


async def test_an_unknown_state_is_a_bad_request(storage):
    with pytest.raises(BadRequest):
        await storage.list(state="running")
