"""Queue limits over the API: PATCH /v1/queues/{queue}, the limits in the
queue JSON (GET /v1/queues, /v1/queues/{queue}), and a task's group from
enqueue to the task JSON.

The tests that store limits or groups need a backend that implements
``set_limits`` and groups (issue 8); the ones about refused requests and
tokens do not reach the store's limits at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api.conftest import Api, MakeApi
from tests.security.conftest import bearer, token_config


def _limits(**given: Any) -> dict[str, Any]:
    return {"concurrency": None, "rate_limit": None, "rate_interval": 1.0, "rate_burst": None,
            "group_concurrency": None, **given}


async def _patch(api: Api, queue: str, body: Any, **kw: Any) -> tuple[int, Any]:
    return await api.call("PATCH", f"/v1/queues/{queue}", body, **kw)


# -- PATCH: what it changes -------------------------------------------------------


async def test_patch_changes_only_the_fields_given(api: Api) -> None:
    await api.enqueue(queue="work")
    status, body = await _patch(api, "work", {"concurrency": 5})
    assert status == 200, body
    assert body["name"] == "work" and body["paused"] is False
    assert body["counts"]["pending"] == 1
    assert body["limits"] == _limits(concurrency=5)

    status, body = await _patch(api, "work", {"rate_limit": 10, "rate_interval": 2.5,
                                              "rate_burst": 30, "group_concurrency": 2})
    assert status == 200, body
    assert body["limits"] == _limits(concurrency=5, rate_limit=10, rate_interval=2.5,
                                     rate_burst=30, group_concurrency=2)

    status, body = await _patch(api, "work", {"paused": True})
    assert status == 200 and body["paused"] is True
    assert body["limits"]["concurrency"] == 5  # untouched by a pause

    # GET /v1/queues/{q} and the list show the same
    _, one = await api.call("GET", "/v1/queues/work")
    _, listed = await api.call("GET", "/v1/queues")
    assert one == body == {q["name"]: q for q in listed["queues"]}["work"]
    info = await api.store.queue("work")
    assert info.limits.concurrency == 5 and info.limits.rate_interval == 2.5
    assert info.config_digest is None  # a runtime change names no config


async def test_null_removes_a_limit_and_leaves_the_others(api: Api) -> None:
    await _patch(api, "work", {"concurrency": 5, "rate_limit": 10, "rate_burst": 20,
                               "rate_interval": 60})
    status, body = await _patch(api, "work", {"concurrency": None, "rate_interval": None})
    assert status == 200, body
    assert body["limits"] == _limits(rate_limit=10, rate_burst=20)  # interval back to 1 s
    # Removing the rate limit removes the burst that only meant something with it.
    status, body = await _patch(api, "work", {"rate_limit": None})
    assert status == 200 and body["limits"] == _limits()


async def test_concurrent_patches_of_different_fields_keep_each_other(api: Api) -> None:
    """Each PATCH merges its field into what it read; a PATCH that lost the
    race to another writes again instead of undoing the other's field."""
    fields = ("concurrency", "rate_limit", "group_concurrency")
    for n in range(1, 16):
        answers = await asyncio.gather(*(_patch(api, "work", {f: n}) for f in fields))
        assert [status for status, _ in answers] == [200] * len(fields), answers
        _, body = await api.call("GET", "/v1/queues/work")
        assert {f: body["limits"][f] for f in fields} == dict.fromkeys(fields, n), n


async def test_patch_resumes_and_sets_limits_in_one_request(api: Api) -> None:
    await api.call("POST", "/v1/queues/work/pause")
    status, body = await _patch(api, "work", {"paused": False, "concurrency": 1})
    assert status == 200, body
    assert body["paused"] is False and body["limits"] == _limits(concurrency=1)


async def test_patch_creates_a_queue_never_named(api: Api) -> None:
    status, _ = await api.call("GET", "/v1/queues/fresh")
    assert status == 404
    status, body = await _patch(api, "fresh", {"group_concurrency": 3})
    assert status == 200, body
    assert body["limits"] == _limits(group_concurrency=3)
    assert all(n == 0 for n in body["counts"].values())
    status, _ = await api.call("GET", "/v1/queues/fresh")
    assert status == 200


async def test_pausing_by_patch_needs_no_limits_and_creates_the_queue(api: Api) -> None:
    status, body = await _patch(api, "only-paused", {"paused": True})
    assert status == 200, body
    assert body["paused"] is True and body["limits"] == _limits()
    assert await api.lease("only-paused") == []


# -- PATCH: what it refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "body: give at least one of paused, concurrency"),
        ({"bogus": 1}, "bogus: unknown field"),
        ({"concurrency": 5, "weight": 2}, "weight: unknown field"),
        ({"concurrency": 0}, "concurrency:"),
        ({"concurrency": -1}, "concurrency:"),
        ({"concurrency": "5"}, "concurrency:"),
        ({"concurrency": True}, "concurrency:"),
        ({"concurrency": 1.5}, "concurrency:"),
        ({"rate_limit": 0}, "rate_limit:"),
        ({"rate_burst": 0}, "rate_burst:"),
        ({"group_concurrency": 0}, "group_concurrency:"),
        ({"group_concurrency": 10**12}, "group_concurrency:"),
        ({"rate_interval": 0}, "rate_interval:"),
        ({"rate_interval": -1}, "rate_interval:"),
        ({"rate_interval": 86401}, "rate_interval:"),
        ({"rate_interval": "1s"}, "rate_interval:"),
        ({"paused": "yes"}, "paused:"),
        ({"paused": None}, "paused:"),
        ({"rate_burst": 5}, "rate_burst: needs a rate_limit"),
        ([], "body:"),
        (5, "body:"),
    ],
)
async def test_patch_400_names_the_field(api: Api, body: Any, named: str) -> None:
    status, answer = await _patch(api, "work", body)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_request"
    assert answer["error"]["message"].startswith(named), answer
    assert (await api.store.queue("default")).limits.concurrency is None


async def test_patch_400_for_bad_json_and_bad_queue_names(api: Api) -> None:
    status, answer = await _patch(api, "work", None, raw=b"{not json")
    assert status == 400 and "malformed JSON" in answer["error"]["message"]
    status, answer = await _patch(api, "-bad", {"paused": True})
    assert status == 400 and answer["error"]["message"].startswith("queue:")
    status, answer = await _patch(api, "work", None, raw=b"")
    assert status == 400 and answer["error"]["message"].startswith("body:")


async def test_patch_needs_an_admin_token_like_pause(make_api: MakeApi) -> None:
    api = await make_api(tokens=token_config())
    status, answer = await _patch(api, "work", {"paused": True})
    assert status == 401, answer
    for scope in ("read", "write"):
        status, answer = await _patch(api, "work", {"paused": True}, headers=bearer(scope))
        assert status == 403, answer
        assert "needs scope 'admin'" in answer["error"]["message"]
    assert "work" not in {q.name for q in await api.store.queues()}  # nothing changed
    status, answer = await _patch(api, "work", {"paused": True}, headers=bearer("admin"))
    assert status == 200 and answer["paused"] is True


# -- GET shows limits ----------------------------------------------------------------


async def test_limits_set_in_the_store_show_in_get(api: Api) -> None:
    from tqd.models import QueueLimits

    await api.store.set_limits(
        "images", QueueLimits(concurrency=2, rate_limit=50, rate_interval=60.0), api.svc.clock.now()
    )
    _, body = await api.call("GET", "/v1/queues/images")
    assert body["limits"] == _limits(concurrency=2, rate_limit=50, rate_interval=60.0)
    _, listed = await api.call("GET", "/v1/queues")
    by_name = {q["name"]: q for q in listed["queues"]}
    assert by_name["images"]["limits"] == body["limits"]
    assert by_name["default"]["limits"] == _limits()


# -- a task's group -------------------------------------------------------------------


async def test_group_round_trips_through_enqueue_get_and_list(api: Api) -> None:
    task = await api.enqueue(queue="work", group="tenant-a", payload={"n": 1})
    assert task["group"] == "tenant-a"
    _, got = await api.call("GET", f"/v1/tasks/{task['id']}")
    assert got["group"] == "tenant-a"
    _, page = await api.call("GET", "/v1/tasks?queue=work")
    assert [t["group"] for t in page["tasks"]] == ["tenant-a"]
    (leased,) = await api.lease("work")
    assert leased.group == "tenant-a"


async def test_a_task_without_a_group_shows_null(api: Api) -> None:
    task = await api.enqueue()
    assert "group" in task and task["group"] is None


async def test_batch_enqueue_keeps_each_tasks_group(api: Api) -> None:
    status, body = await api.call("POST", "/v1/tasks/batch", {"tasks": [
        {"name": "tqd.noop", "group": "a"}, {"name": "tqd.noop"}, {"name": "tqd.noop", "group": "b"},
    ]})
    assert status == 201, body
    assert [t["group"] for t in body["tasks"]] == ["a", None, "b"]
    for t in body["tasks"]:
        _, got = await api.call("GET", f"/v1/tasks/{t['id']}")
        assert got["group"] == t["group"]


@pytest.mark.parametrize("group", ["", "-x", "a b", "x" * 129, "ü"])
async def test_a_bad_group_is_400_naming_group(api: Api, group: str) -> None:
    status, body = await api.call("POST", "/v1/tasks", {"name": "tqd.noop", "group": group})
    assert status == 400 and body["error"]["message"].startswith("group:"), body
    status, body = await api.call("POST", "/v1/tasks/batch", {"tasks": [
        {"name": "tqd.noop"}, {"name": "tqd.noop", "group": group}]})
    assert status == 400 and body["error"]["message"].startswith("tasks[1].group:"), body
    status, body = await api.call("POST", "/v1/tasks", {"name": "tqd.noop", "group": 5})
    assert status == 400 and body["error"]["message"].startswith("group:"), body
    _, page = await api.call("GET", "/v1/tasks")
    assert page["tasks"] == []
