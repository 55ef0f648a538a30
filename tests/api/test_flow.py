"""The API of issue 8 part A: GET /v1/schedules and trigger, unique tasks on
enqueue, POST /v1/tasks/{id}/progress (remote workers), the task's progress."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api
from tqd.api.app import Services, create_app
from tqd.clock import FakeClock
from tqd.config import load_config
from tqd.runtime.catalog import Catalog
from tqd.runtime.cron import Cron, build_schedules
from tqd.runtime.progress import ProgressWriter
from tqd.storage.sqlite import SqliteStorage

T0 = 1_800_000_000.0

CONFIG = {
    "tasks": {
        "report": {"handler": "builtin:noop", "queue": "reports", "priority": 3},
        "sync": {"handler": "builtin:noop", "unique_for": 300},
    },
    "schedules": {
        "nightly": {"cron": "30 2 * * *", "timezone": "Europe/Riga", "task": "report",
                    "payload": {"full": True}, "catch_up": True},
        "minutely": {"cron": "* * * * *", "task": "sync", "queue": "fast", "priority": -1},
    },
}


@pytest.fixture
async def flow(aiohttp_client: Any, tmp_path) -> Api:
    config = load_config(None, env={}, overrides={
        "storage": f"sqlite://{tmp_path / 'tqd.db'}", **CONFIG,
    })
    store = SqliteStorage(str(tmp_path / "tqd.db"))
    await store.open()
    clock = FakeClock(T0)
    catalog = Catalog(config)
    cron = Cron(store, catalog, build_schedules(config, catalog), clock)
    writer = ProgressWriter(store, clock, interval=0.01)
    writer.start()
    svc = Services(storage=store, catalog=catalog, config=config, clock=clock, cron=cron,
                   progress=writer)
    client = await aiohttp_client(create_app(svc))
    yield Api(client, svc)
    await writer.close()
    await store.close()


async def test_schedules_are_listed_with_last_and_next_firing(flow):
    status, body = await flow.call("GET", "/v1/schedules")
    assert status == 200
    by_name = {s["name"]: s for s in body["schedules"]}
    assert list(by_name) == ["minutely", "nightly"]
    nightly = by_name["nightly"]
    assert nightly == {
        "name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Riga", "task": "report",
        "payload": {"full": True}, "queue": "reports", "priority": 3, "catch_up": True,
        "last_instant": None, "last_fired_at": None,
        # T0 is 2027-01-15T08:00:00Z; 02:30 in Riga (UTC+2) is 00:30Z
        "next_fire_at": "2027-01-16T00:30:00.000000Z",
    }
    minutely = by_name["minutely"]
    assert (minutely["queue"], minutely["priority"]) == ("fast", -1)
    assert minutely["next_fire_at"] == "2027-01-15T08:01:00.000000Z"

    cron = flow.svc.cron
    await cron.run_once(T0)
    flow.svc.clock.advance(60.5)
    await cron.run_once(flow.svc.clock.now())
    _, body = await flow.call("GET", "/v1/schedules")
    minutely = {s["name"]: s for s in body["schedules"]}["minutely"]
    assert minutely["last_instant"] == "2027-01-15T08:01:00.000000Z"
    assert minutely["last_fired_at"] == "2027-01-15T08:01:00.500000Z"
    assert minutely["next_fire_at"] == "2027-01-15T08:02:00.000000Z"


async def test_trigger_enqueues_the_task_now(flow):
    status, task = await flow.call("POST", "/v1/schedules/nightly/trigger")
    assert status == 201, task
    assert (task["name"], task["queue"], task["payload"], task["state"]) == (
        "report", "reports", {"full": True}, "pending")
    assert task["idempotency_key"] is None
    _, again = await flow.call("GET", f"/v1/tasks/{task['id']}")
    assert again["id"] == task["id"]
    _, body = await flow.call("GET", "/v1/schedules")
    assert all(s["last_fired_at"] is None for s in body["schedules"])  # not an instant


async def test_trigger_of_an_unknown_schedule_is_404(flow):
    status, body = await flow.call("POST", "/v1/schedules/nope/trigger")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert "nightly" in body["error"]["message"]


async def test_trigger_is_refused_while_draining(flow):
    flow.svc.draining = True
    status, body = await flow.call("POST", "/v1/schedules/nightly/trigger")
    assert status == 503 and body["error"]["code"] == "shutting_down"


async def test_without_schedules_the_list_is_empty(api):
    assert await api.call("GET", "/v1/schedules") == (200, {"schedules": []})
    status, _ = await api.call("POST", "/v1/schedules/any/trigger")
    assert status == 404


async def test_a_unique_task_returns_its_live_twin_with_200(flow):
    status, first = await flow.call("POST", "/v1/tasks", {"name": "sync", "payload": {"a": 1, "b": 2}})
    assert status == 201
    assert first["unique_key"].startswith("sha256:")
    # the same payload as JSON (keys in another order) is a twin
    status, twin = await flow.call("POST", "/v1/tasks", {"name": "sync", "payload": {"b": 2, "a": 1}})
    assert (status, twin["id"]) == (200, first["id"])
    status, other = await flow.call("POST", "/v1/tasks", {"name": "sync", "payload": {"a": 2}})
    assert status == 201 and other["id"] != first["id"]
    # an explicit key overrides the payload hash
    status, keyed = await flow.call("POST", "/v1/tasks", {"name": "sync", "payload": 1, "unique_key": "acct-7"})
    assert status == 201 and keyed["unique_key"] == "acct-7"
    status, twin = await flow.call("POST", "/v1/tasks", {"name": "sync", "payload": 2, "unique_key": "acct-7"})
    assert (status, twin["id"]) == (200, keyed["id"])


async def test_unique_key_on_a_task_that_is_not_unique_is_refused(flow):
    status, body = await flow.call("POST", "/v1/tasks", {"name": "report", "unique_key": "k"})
    assert status == 400
    assert body["error"]["message"] == (
        "unique_key: task 'report' is not unique (set unique_for in [tasks.report])")
    status, body = await flow.call("POST", "/v1/tasks/batch", {"tasks": [
        {"name": "sync"}, {"name": "report", "unique_key": "k"}]})
    assert status == 400
    assert body["error"]["message"].startswith("tasks[1].unique_key: task 'report'")
    status, body = await flow.call("POST", "/v1/tasks", {"name": "sync", "unique_key": "has space"})
    assert status == 400 and body["error"]["message"].startswith("unique_key:")


async def test_remote_progress_is_shown_on_the_task(flow):
    task = await flow.enqueue("sync", queue="remote")
    [leased] = await flow.lease("remote")
    assert task["progress"] is None
    status, body = await flow.call("POST", f"/v1/tasks/{leased.id}/progress",
                                   {"token": leased.lease_token, "progress": 0.25, "message": "a quarter"})
    assert status == 200, body
    assert body == {"id": leased.id, "progress": {"fraction": 0.25, "message": "a quarter"}}
    _, shown = await flow.call("GET", f"/v1/tasks/{leased.id}")
    assert shown["progress"] == {"fraction": 0.25, "message": "a quarter",
                                 "at": "2027-01-15T08:00:00.000000Z"}


async def test_remote_progress_with_a_stale_token_is_409_and_changes_nothing(flow):
    await flow.enqueue("sync", queue="remote")
    [leased] = await flow.lease("remote")
    status, body = await flow.call("POST", f"/v1/tasks/{leased.id}/progress",
                                   {"token": "not-the-token", "progress": 0.5})
    assert status == 409 and body["error"]["code"] == "stale_lease"
    _, shown = await flow.call("GET", f"/v1/tasks/{leased.id}")
    assert shown["progress"] is None
    status, body = await flow.call("POST", "/v1/tasks/00000000000000000000/progress",
                                   {"token": "t", "progress": 0.5})
    assert status == 404 and body["error"]["code"] == "not_found"


@pytest.mark.parametrize(("body", "message"), [
    ({"token": "t", "progress": 1.5}, "progress: expected `float` <= 1.0"),
    ({"token": "t", "progress": -1}, "progress: expected `float` >= 0.0"),
    ({"token": "t"}, "progress: required field missing"),
    ({"progress": 0.5}, "token: required field missing"),
    ({"token": "t", "progress": 0.5, "message": "x" * 501}, "message: expected `str` of length <= 500"),
    ({"token": "t", "progress": 0.5, "extra": 1}, "extra: unknown field"),
])
async def test_remote_progress_bodies_are_checked(flow, body, message):
    status, answer = await flow.call("POST", "/v1/tasks/00000000000000000000/progress", body)
    assert status == 400
    assert answer["error"]["message"] == message


async def test_the_answers_match_the_contract(flow):
    """Decoded into the contract's structs (unknown or missing fields fail)."""
    import msgspec
    import orjson

    from tqd.api import contract

    def check(body, kind):
        return msgspec.json.decode(orjson.dumps(body), type=kind)

    await flow.svc.cron.run_once(T0)
    flow.svc.clock.advance(60)
    await flow.svc.cron.run_once(flow.svc.clock.now())
    _, listed = await flow.call("GET", "/v1/schedules")
    check(listed, contract.ScheduleList)
    _, triggered = await flow.call("POST", "/v1/schedules/minutely/trigger")
    check(triggered, contract.TaskOut)
    [leased] = [t for t in await flow.lease("fast") if t.id == triggered["id"]]
    _, noted = await flow.call("POST", f"/v1/tasks/{leased.id}/progress",
                               {"token": leased.lease_token, "progress": 1, "message": "m"})
    check(noted, contract.ProgressNoted)
    _, shown = await flow.call("GET", f"/v1/tasks/{leased.id}")
    out = check(shown, contract.TaskOut)
    assert out.progress is not None and out.progress.fraction == 1.0
    assert out.unique_key is not None
