"""GET /v1/tasks/{id} (with ?wait=), GET /v1/tasks (filters, cursor paging),
cancel, retry and delete."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.api.conftest import Api

# -- ?wait= -------------------------------------------------------------------


async def test_wait_answers_as_soon_as_the_task_completes(api: Api) -> None:
    task = await api.enqueue("tqd.echo", payload="hi")
    waiting = asyncio.create_task(api.call("GET", f"/v1/tasks/{task['id']}?wait=30"))
    (leased,) = await api.lease()
    await asyncio.sleep(0.2)
    assert not waiting.done(), "answered before the task ended"
    await api.finish(leased, result={"answer": 42})
    status, body = await asyncio.wait_for(waiting, 10)  # far less than the 30 s asked for
    assert status == 200
    assert body["state"] == "completed" and body["result"] == {"answer": 42}


@pytest.mark.parametrize("end", ["failed", "cancelled", "deleted"])
async def test_wait_answers_when_the_task_fails_is_cancelled_or_deleted(api: Api, end: str) -> None:
    task = await api.enqueue(delay=3600 if end == "deleted" else None)
    waiting = asyncio.create_task(api.call("GET", f"/v1/tasks/{task['id']}?wait=30"))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    if end == "failed":
        (leased,) = await api.lease()
        await api.finish(leased, "fail")
    elif end == "cancelled":
        await api.call("POST", f"/v1/tasks/{task['id']}/cancel")
    else:
        await api.call("DELETE", f"/v1/tasks/{task['id']}")
    status, body = await asyncio.wait_for(waiting, 10)
    if end == "deleted":
        assert status == 404 and body["error"]["code"] == "not_found"
    else:
        assert status == 200 and body["state"] == end


async def test_wait_returns_the_task_as_it_is_when_the_wait_ends(api: Api) -> None:
    task = await api.enqueue()
    (leased,) = await api.lease()
    started = time.monotonic()
    status, body = await api.call("GET", f"/v1/tasks/{task['id']}?wait=0.4")
    elapsed = time.monotonic() - started
    assert status == 200 and body["state"] == "processing"
    assert elapsed >= 0.39, "answered before the wait ended"
    assert leased.id == task["id"]


async def test_wait_on_a_finished_task_answers_at_once(api: Api) -> None:
    task = await api.in_state("completed")
    status, body = await asyncio.wait_for(api.call("GET", f"/v1/tasks/{task['id']}?wait=60"), 5)
    assert status == 200 and body == task


async def test_many_waiters_on_one_task(api: Api) -> None:
    task = await api.enqueue()
    waiters = [asyncio.create_task(api.call("GET", f"/v1/tasks/{task['id']}?wait=30"))
               for _ in range(20)]
    await asyncio.sleep(0.2)
    (leased,) = await api.lease()
    await api.finish(leased)
    answers = await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert {(s, b["state"]) for s, b in answers} == {(200, "completed")}
    assert api.svc.waiters._by_id == {}  # nothing left behind


async def test_get_without_wait_answers_at_once(api: Api) -> None:
    task = await api.enqueue()
    for query in ["", "?wait=0", "?wait="]:
        status, body = await asyncio.wait_for(api.call("GET", f"/v1/tasks/{task['id']}{query}"), 5)
        assert status == 200 and body["state"] == "pending"


# -- listing -----------------------------------------------------------------


async def _ids(api: Api, query: str) -> list[str]:
    status, page = await api.call("GET", f"/v1/tasks{query}")
    assert status == 200, page
    return [t["id"] for t in page["tasks"]]


async def test_list_filters_newest_first(api: Api) -> None:
    made = {
        "a-pending-noop": await api.in_state("pending", queue="a"),
        "a-done-noop": await api.in_state("completed", queue="a"),
        "b-pending-echo": await api.enqueue("tqd.echo", queue="b"),
        "b-failed-noop": await api.in_state("failed", queue="b"),
        "a-scheduled-echo": await api.enqueue("tqd.echo", queue="a", delay=60),
        "b-pending-noop": await api.in_state("pending", queue="b"),
    }
    ids = {label: t["id"] for label, t in made.items()}
    newest_first = list(reversed(list(ids.values())))

    def only(*labels: str) -> list[str]:
        return [i for i in newest_first if i in {ids[lb] for lb in labels}]

    assert await _ids(api, "") == newest_first
    assert await _ids(api, "?state=pending") == only("a-pending-noop", "b-pending-echo", "b-pending-noop")
    assert await _ids(api, "?queue=a") == only("a-pending-noop", "a-done-noop", "a-scheduled-echo")
    assert await _ids(api, "?name=tqd.echo") == only("b-pending-echo", "a-scheduled-echo")
    assert await _ids(api, "?queue=b&state=pending") == only("b-pending-echo", "b-pending-noop")
    assert await _ids(api, "?queue=b&state=pending&name=tqd.noop") == only("b-pending-noop")
    assert await _ids(api, "?state=failed") == only("b-failed-noop")
    assert await _ids(api, "?queue=nowhere") == []


async def test_cursor_paging_visits_every_task_once(api: Api) -> None:
    status, body = await api.call("POST", "/v1/tasks/batch",
                                  {"tasks": [{"name": "tqd.noop", "payload": i} for i in range(23)]})
    assert status == 201
    expected = [t["id"] for t in reversed(body["tasks"])]
    for query in ["", "&queue=default", "&state=pending", "&queue=default&state=pending"]:
        seen, cursor, pages = [], None, 0
        while True:
            url = f"/v1/tasks?limit=5{query}" + (f"&cursor={cursor}" if cursor else "")
            status, page = await api.call("GET", url)
            assert status == 200 and len(page["tasks"]) <= 5
            seen += [t["id"] for t in page["tasks"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, query
        assert pages == 5


async def test_list_defaults_to_50(api: Api) -> None:
    await api.call("POST", "/v1/tasks/batch", {"tasks": [{"name": "tqd.noop"}] * 60})
    _, page = await api.call("GET", "/v1/tasks")
    assert len(page["tasks"]) == 50 and page["next_cursor"] is not None


async def test_tasks_added_during_paging_do_not_disturb_it(api: Api) -> None:
    first = [(await api.enqueue(payload=i))["id"] for i in range(6)]
    _, page = await api.call("GET", "/v1/tasks?limit=3")
    await api.enqueue(payload="late")
    _, rest = await api.call("GET", f"/v1/tasks?limit=10&cursor={page['next_cursor']}")
    assert [t["id"] for t in page["tasks"] + rest["tasks"]] == list(reversed(first))


# -- cancel, retry, delete ------------------------------------------------------


@pytest.mark.parametrize("state", ["pending", "scheduled", "processing"])
async def test_cancel_answers_with_the_task_as_it_now_is(api: Api, state: str) -> None:
    task = await api.in_state(state)
    status, body = await api.call("POST", f"/v1/tasks/{task['id']}/cancel")
    assert status == 200
    assert body["id"] == task["id"] and body["state"] == "cancelled"
    assert body["finished_at"] is not None
    status, fetched = await api.call("GET", f"/v1/tasks/{task['id']}")
    assert fetched == body


@pytest.mark.parametrize("state", ["failed", "cancelled"])
async def test_retry_answers_with_the_task_pending_again(api: Api, state: str) -> None:
    task = await api.in_state(state, max_attempts=2)
    status, body = await api.call("POST", f"/v1/tasks/{task['id']}/retry")
    assert status == 200
    assert body["state"] == "pending" and body["finished_at"] is None
    assert body["attempts"] == task["attempts"]
    assert body["max_attempts"] == task["attempts"] + 2  # the budget is granted again
    if state == "failed":
        assert body["error"] == task["error"]  # the history stays
    status, fetched = await api.call("GET", f"/v1/tasks/{task['id']}")
    assert fetched == body
    assert (await api.lease())[0].id == task["id"]


@pytest.mark.parametrize("state", ["pending", "scheduled", "completed", "failed", "cancelled"])
async def test_delete(api: Api, state: str) -> None:
    task = await api.in_state(state)
    async with api.client.delete(f"/v1/tasks/{task['id']}") as resp:
        assert resp.status == 204
        assert await resp.read() == b""
    status, _ = await api.call("GET", f"/v1/tasks/{task['id']}")
    assert status == 404
    info = await api.store.queue("default")
    assert info.counts[state] == 0
