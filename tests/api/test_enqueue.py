"""POST /v1/tasks and /v1/tasks/batch: the task shape, defaults, delays,
idempotency (also under 50 concurrent requests) and batches."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta, timezone

from tests.api.conftest import Api, MakeApi

FIELDS = {
    "id", "name", "queue", "payload", "priority", "state", "attempts", "max_attempts",
    "result", "error", "created_at", "run_at", "started_at", "finished_at", "idempotency_key",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_enqueue_answers_201_with_the_task_and_its_location(api: Api) -> None:
    before = datetime.now(UTC)
    async with api.client.post("/v1/tasks", json={"name": "tqd.echo", "payload": {"x": [1, "y"]}}) as resp:
        assert resp.status == 201
        assert resp.content_type == "application/json"
        task = await resp.json()
        location = resp.headers["Location"]
    assert FIELDS <= set(task)
    assert location == f"/v1/tasks/{task['id']}"
    assert task["name"] == "tqd.echo" and task["queue"] == "default"
    assert task["payload"] == {"x": [1, "y"]}
    assert (task["state"], task["priority"], task["attempts"], task["max_attempts"]) == ("pending", 0, 0, 3)
    assert task["result"] is None and task["error"] is None and task["idempotency_key"] is None
    assert task["run_at"] is None and task["started_at"] is None and task["finished_at"] is None
    assert RFC3339_UTC.match(task["created_at"])
    assert before - timedelta(seconds=1) <= _time(task["created_at"]) <= datetime.now(UTC)

    status, fetched = await api.call("GET", location)
    assert status == 200 and fetched == task


async def test_enqueue_with_every_field(api: Api) -> None:
    task = await api.enqueue(
        "tqd.sleep", payload={"seconds": 0}, queue="images", priority=-7, max_attempts=9,
        timeout=2.5, idempotency_key="k-1",
    )
    assert (task["queue"], task["priority"], task["max_attempts"]) == ("images", -7, 9)
    assert task["idempotency_key"] == "k-1"
    stored = await api.store.get(task["id"])
    assert stored is not None and stored.timeout == 2.5


async def test_payload_defaults_to_null_and_keeps_any_json(api: Api) -> None:
    assert (await api.enqueue())["payload"] is None
    for payload in [0, "text", [1, 2.5, None], {"nested": {"deep": [True, False]}}, 2**63 - 1]:
        assert (await api.enqueue(payload=payload))["payload"] == payload


async def test_delay_schedules_the_task(api: Api) -> None:
    task = await api.enqueue(delay=90)
    assert task["state"] == "scheduled"
    run_at = _time(task["run_at"])
    created = _time(task["created_at"])
    assert abs((run_at - created).total_seconds() - 90) < 0.01
    assert RFC3339_UTC.match(task["run_at"])


async def test_run_at_in_the_future_schedules_in_the_past_runs_now(api: Api) -> None:
    future = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    task = await api.enqueue(run_at=future.isoformat())
    assert task["state"] == "scheduled" and _time(task["run_at"]) == future
    # Other offsets are understood and shown in UTC.
    plus2 = (future + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    task = await api.enqueue(run_at=plus2.isoformat())
    assert task["run_at"].endswith("Z") and "+02:00" in plus2.isoformat()
    assert _time(task["run_at"]) == future + timedelta(hours=1)
    past = await api.enqueue(run_at="2001-02-03T04:05:06Z")
    assert past["state"] == "pending" and past["run_at"] is None


async def test_a_configured_task_takes_its_defaults(make_api: MakeApi) -> None:
    api = await make_api(tasks={"tqd.echo": {"queue": "echoes", "priority": 40, "max_attempts": 7}})
    task = await api.enqueue("tqd.echo")
    assert (task["queue"], task["priority"], task["max_attempts"]) == ("echoes", 40, 7)
    task = await api.enqueue("tqd.echo", queue="other", priority=0, max_attempts=1)
    assert (task["queue"], task["priority"], task["max_attempts"]) == ("other", 0, 1)


# -- idempotency ------------------------------------------------------------


async def test_idempotency_key_header_returns_the_first_task(api: Api) -> None:
    headers = {"Idempotency-Key": "order-42"}
    status, first = await api.call("POST", "/v1/tasks", {"name": "tqd.echo", "payload": 1}, headers=headers)
    assert status == 201 and first["idempotency_key"] == "order-42"
    async with api.client.post("/v1/tasks", json={"name": "tqd.echo", "payload": 2}, headers=headers) as resp:
        assert resp.status == 200
        again = await resp.json()
        assert resp.headers["Location"] == f"/v1/tasks/{first['id']}"
    assert again == first  # the first task, its payload unchanged
    status, body = await api.call("POST", "/v1/tasks", {"name": "tqd.echo", "idempotency_key": "order-42"})
    assert status == 200 and body["id"] == first["id"]
    status, page = await api.call("GET", "/v1/tasks")
    assert [t["id"] for t in page["tasks"]] == [first["id"]]


async def test_idempotency_keys_are_scoped_per_queue(api: Api) -> None:
    a = await api.enqueue(idempotency_key="same", queue="a")
    b = await api.enqueue(idempotency_key="same", queue="b")
    assert a["id"] != b["id"]
    other = await api.enqueue(idempotency_key="different", queue="a")
    assert other["id"] != a["id"]


async def test_a_key_in_both_header_and_body_must_agree(api: Api) -> None:
    body = {"name": "tqd.noop", "idempotency_key": "k"}
    status, _ = await api.call("POST", "/v1/tasks", body, headers={"Idempotency-Key": "k"})
    assert status == 201
    status, err = await api.call("POST", "/v1/tasks", body, headers={"Idempotency-Key": "other"})
    assert status == 400 and "idempotency_key" in err["error"]["message"]


async def test_50_concurrent_identical_requests_create_one_task(api: Api) -> None:
    body = {"name": "tqd.echo", "payload": {"order": 7}}
    headers = {"Idempotency-Key": "pay-order-7"}
    answers = await asyncio.gather(
        *(api.call("POST", "/v1/tasks", body, headers=headers) for _ in range(50))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 49 + [201]
    assert len({body["id"] for _, body in answers}) == 1
    info = await api.store.queue("default")
    assert info.counts["pending"] == 1
    _, page = await api.call("GET", "/v1/tasks?limit=100")
    assert len(page["tasks"]) == 1


# -- batches ------------------------------------------------------------------


async def test_batch_answers_201_with_every_task_in_order(api: Api) -> None:
    items = [{"name": "tqd.echo", "payload": i, "priority": i % 3} for i in range(20)]
    items.append({"name": "tqd.noop", "queue": "other", "delay": 60})
    status, body = await api.call("POST", "/v1/tasks/batch", {"tasks": items})
    assert status == 201
    tasks = body["tasks"]
    assert [t["payload"] for t in tasks[:20]] == list(range(20))
    assert tasks[20]["state"] == "scheduled" and tasks[20]["queue"] == "other"
    assert len({t["id"] for t in tasks}) == 21
    for t in tasks:
        assert await api.store.get(t["id"]) is not None


async def test_batch_is_all_or_nothing(api: Api) -> None:
    good = {"name": "tqd.noop"}
    for bad, status in [
        ({"name": "tqd.noop", "priority": 1000}, 400),
        ({"name": "no.such.task"}, 422),
        ({"name": "tqd.noop", "extra": 1}, 400),
    ]:
        got, err = await api.call("POST", "/v1/tasks/batch", {"tasks": [good, good, bad, good]})
        assert got == status, err
        assert "tasks[2]" in err["error"]["message"]
    status, page = await api.call("GET", "/v1/tasks")
    assert page["tasks"] == []
    assert (await api.store.queue("default")).counts["pending"] == 0


async def test_batch_limit(make_api: MakeApi) -> None:
    api = await make_api(api={"max_batch": 5})
    status, body = await api.call("POST", "/v1/tasks/batch", {"tasks": [{"name": "tqd.noop"}] * 5})
    assert status == 201 and len(body["tasks"]) == 5
    status, err = await api.call("POST", "/v1/tasks/batch", {"tasks": [{"name": "tqd.noop"}] * 6})
    assert status == 400
    assert "tasks" in err["error"]["message"] and "5" in err["error"]["message"]
    status, err = await api.call("POST", "/v1/tasks/batch", {"tasks": []})
    assert status == 400 and err["error"]["message"].startswith("tasks")
    assert (await api.store.queue("default")).counts["pending"] == 5


async def test_default_batch_limit_is_1000(api: Api) -> None:
    status, body = await api.call("POST", "/v1/tasks/batch", {"tasks": [{"name": "tqd.noop"}] * 1000})
    assert status == 201 and len(body["tasks"]) == 1000
    status, err = await api.call("POST", "/v1/tasks/batch", {"tasks": [{"name": "tqd.noop"}] * 1001})
    assert status == 400 and "1000" in err["error"]["message"]


async def test_batch_idempotency_keys(api: Api) -> None:
    first = await api.enqueue(idempotency_key="dup")
    status, body = await api.call(
        "POST", "/v1/tasks/batch",
        {"tasks": [{"name": "tqd.noop", "idempotency_key": "dup"},
                   {"name": "tqd.noop", "idempotency_key": "new"},
                   {"name": "tqd.noop", "idempotency_key": "new"}]},
    )
    assert status == 201
    ids = [t["id"] for t in body["tasks"]]
    assert ids[0] == first["id"] and ids[1] == ids[2] != first["id"]
    assert (await api.store.queue("default")).counts["pending"] == 2
