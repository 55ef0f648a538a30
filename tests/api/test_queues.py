"""/v1/queues (list, get, pause, resume, redrive, purge) and /healthz, /readyz."""

from __future__ import annotations

from tests.api.conftest import Api, MakeApi
from tqd.models import STATES

#: The limits of a queue that has none.
NO_LIMITS_JSON = {"concurrency": None, "rate_limit": None, "rate_interval": 1.0,
                  "rate_burst": None, "group_concurrency": None}


def _counts(**nonzero: int) -> dict[str, int]:
    return {state: nonzero.get(state, 0) for state in STATES}


async def test_queues_named_in_config_by_tasks_or_by_pausing_exist(make_api: MakeApi) -> None:
    api = await make_api(queues={"images": {"concurrency": 2}},
                         tasks={"mail": {"handler": "builtin:noop", "queue": "mail"}})
    status, body = await api.call("GET", "/v1/queues")
    assert status == 200
    assert [q["name"] for q in body["queues"]] == ["default", "images", "mail"]
    for q in body["queues"]:
        assert q == {"name": q["name"], "paused": False, "counts": _counts(),
                     "limits": NO_LIMITS_JSON}

    await api.enqueue(queue="adhoc")
    status, body = await api.call("POST", "/v1/queues/only-paused/pause")
    assert status == 200
    _, body = await api.call("GET", "/v1/queues")
    assert [q["name"] for q in body["queues"]] == ["adhoc", "default", "images", "mail", "only-paused"]
    by_name = {q["name"]: q for q in body["queues"]}
    assert by_name["adhoc"]["counts"] == _counts(pending=1)
    assert by_name["only-paused"]["paused"] is True


async def test_get_queue_counts_every_state(api: Api) -> None:
    for state, n in [("pending", 3), ("scheduled", 2), ("processing", 1), ("completed", 4),
                     ("failed", 2), ("cancelled", 1)]:
        for _ in range(n):
            await api.in_state(state, queue="mix")
    status, body = await api.call("GET", "/v1/queues/mix")
    assert status == 200
    assert body == {"name": "mix", "paused": False, "counts": _counts(
        pending=3, scheduled=2, processing=1, completed=4, failed=2, cancelled=1),
        "limits": NO_LIMITS_JSON}


async def test_pause_and_resume_answer_with_the_queue_as_it_now_is(api: Api) -> None:
    await api.enqueue(queue="work")
    status, body = await api.call("POST", "/v1/queues/work/pause")
    assert status == 200 and body == {"name": "work", "paused": True, "counts": _counts(pending=1),
                                      "limits": NO_LIMITS_JSON}
    assert await api.lease("work") == []  # a paused queue hands out nothing
    status, again = await api.call("POST", "/v1/queues/work/pause")
    assert status == 200 and again == body  # pausing twice is harmless
    status, body = await api.call("GET", "/v1/queues/work")
    assert body["paused"] is True
    status, body = await api.call("POST", "/v1/queues/work/resume")
    assert status == 200 and body == {"name": "work", "paused": False, "counts": _counts(pending=1),
                                      "limits": NO_LIMITS_JSON}
    assert len(await api.lease("work")) == 1


async def test_redrive_puts_every_failed_task_back(api: Api) -> None:
    failed = [await api.in_state("failed", queue="dlq", max_attempts=1) for _ in range(3)]
    await api.in_state("completed", queue="dlq")
    await api.in_state("failed", queue="elsewhere")
    status, body = await api.call("POST", "/v1/queues/dlq/redrive")
    assert status == 200
    assert body["name"] == "dlq" and body["paused"] is False
    assert body["counts"] == _counts(pending=3, completed=1)
    assert body.get("affected") == 3
    for t in failed:
        _, task = await api.call("GET", f"/v1/tasks/{t['id']}")
        assert task["state"] == "pending" and task["max_attempts"] == 2
    _, other = await api.call("GET", "/v1/queues/elsewhere")
    assert other["counts"]["failed"] == 1
    status, body = await api.call("POST", "/v1/queues/dlq/redrive")  # nothing left to move
    assert status == 200 and body.get("affected") == 0


async def test_purge_deletes_one_state(api: Api) -> None:
    done = [await api.in_state("completed", queue="p") for _ in range(3)]
    keep = await api.in_state("failed", queue="p")
    pending = await api.enqueue(queue="p")
    status, body = await api.call("POST", "/v1/queues/p/purge", {"state": "completed"})
    assert status == 200
    assert body["counts"] == _counts(failed=1, pending=1) and body.get("affected") == 3
    for t in done:
        assert (await api.call("GET", f"/v1/tasks/{t['id']}"))[0] == 404
    for t in (keep, pending):
        assert (await api.call("GET", f"/v1/tasks/{t['id']}"))[0] == 200
    status, body = await api.call("POST", "/v1/queues/p/purge", {"state": "pending"})
    assert status == 200 and body["counts"] == _counts(failed=1)


async def test_healthz_and_readyz(api: Api) -> None:
    status, body = await api.call("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}
    status, body = await api.call("GET", "/readyz")
    assert status == 200 and body == {"status": "ready", "storage": "sqlite"}
