"""The OpenAPI document covers every route, and responses match its shapes.

Schemathesis (test_schemathesis.py) checks the live app against the document
with generated requests; these tests check what it cannot: that no route is
left out, that the renderers and contract.py agree field for field, and that
/docs needs nothing but tqd.
"""

from __future__ import annotations

import re

import msgspec
import orjson

from tqd.api import contract
from tqd.api.openapi import OPERATIONS
from tqd.api.render import queue_json, task_json, worker_json
from tqd.config import TaskConfig
from tqd.models import QueueInfo, Task, WorkerInfo, make_error, zero_counts


async def test_every_route_of_the_app_is_in_the_document(tqd, http):
    async with http.get("/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    routes = {
        (r.method, r.resource.canonical)
        for r in tqd._runner.app.router.routes()
        if r.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    undocumented = [(m, p) for p, ops in doc["paths"].items() for m, op in ops.items()
                    if op.get("x-undocumented")]
    assert undocumented == []
    assert set(OPERATIONS) == routes  # and nothing described that does not exist


async def test_every_reference_resolves_and_limits_come_from_the_config(start_tqd):
    import aiohttp

    daemon = await start_tqd(api={"max_batch": 7, "max_wait": 12.5})
    async with aiohttp.ClientSession() as s, s.get(daemon.url + "/openapi.json") as resp:
        doc = await resp.json()
    schemas = doc["components"]["schemas"]
    refs = re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', orjson.dumps(doc).decode())
    assert refs and all(name in schemas for name in refs)
    assert schemas["BatchBody"]["properties"]["tasks"]["maxItems"] == 7
    wait = next(p for p in doc["paths"]["/v1/tasks/{id}"]["get"]["parameters"]
                if p["name"] == "wait")
    assert wait["schema"]["anyOf"][0]["maximum"] == 12.5
    # every operation says what its errors look like (/readyz's 503 is its answer)
    del doc["paths"]["/readyz"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Error"), (method, path, status)


def _decode(body: object, kind: type) -> object:
    return msgspec.json.decode(orjson.dumps(body), type=kind)


def test_rendered_tasks_queues_and_workers_have_exactly_the_contract_fields():
    full = Task(
        id="00D2429AEG3XMNEAYT4V", name="job", queue="q", payload=b'{"a":[1,2]}', priority=-3,
        state="failed", attempts=2, max_attempts=2, created_at=1.5e9, run_at=1.5e9 + 1,
        started_at=1.5e9 + 2, finished_at=1.5e9 + 3, result=b'"r"',
        errors=[make_error("exception", "boom", 1, 1.5e9), make_error("timeout", "t", 2, 1.5e9)],
        idempotency_key="k", timeout=2.5, worker="w1",
    )
    bare = Task(id="00D2429AEG3XMNEAYT4W", name="job", queue="q", created_at=1.5e9)
    for task in (full, bare):
        out = _decode(task_json(task), contract.TaskOut)
        assert out.id == task.id and out.state == task.state
    info = QueueInfo(name="q", paused=True, counts=zero_counts())
    _decode(queue_json(info), contract.QueueOut)
    _decode({**queue_json(info), "affected": 3}, contract.QueueAffected)
    worker = WorkerInfo(id="w", host="h", pid=1, version="0", started_at=1.5e9, concurrency=4,
                        running=["x"], last_heartbeat=1.5e9)
    _decode(worker_json(worker), contract.WorkerOut)


def test_a_field_the_contract_lacks_is_caught():
    body = {**task_json(Task(id="x", name="job", queue="q", created_at=1.5e9)), "extra": 1}
    try:
        _decode(body, contract.TaskOut)
    except msgspec.ValidationError as err:
        assert "extra" in str(err)
    else:
        raise AssertionError("an unknown field passed")


async def test_docs_are_served_from_tqd_alone(http):
    async with http.get("/docs") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page = await resp.text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and not any(a.startswith(("http:", "https:", "//")) for a in assets)
    for asset in assets:
        async with http.get("/" + asset) as resp:
            assert resp.status == 200, asset
            assert len(await resp.read()) > 100
    async with http.get("/docs/docs.js") as resp:
        script = await resp.text()
    assert "validatorUrl: null" in script  # the online validator would call out
    assert '"openapi.json"' in script
    async with http.get("/docs/nothing.js") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_the_document_follows_a_reloaded_configuration(tqd, http):
    async with http.get("/openapi.json") as resp:
        before = await resp.json()
    names = before["components"]["schemas"]["EnqueueBody"]["properties"]["name"]["enum"]
    assert "tqd.echo" in names and "resize" not in names
    config = tqd.services.config
    # as a reload does: a new Config with new task names and limits
    tqd.services.config = msgspec.structs.replace(
        config, api=msgspec.structs.replace(config.api, max_batch=3),
        tasks={**config.tasks, "resize": TaskConfig(handler="builtin:noop")},
    )
    async with http.get("/openapi.json") as resp:
        after = await resp.json()
    schemas = after["components"]["schemas"]
    assert schemas["BatchBody"]["properties"]["tasks"]["maxItems"] == 3
    assert "resize" in schemas["EnqueueBody"]["properties"]["name"]["enum"]
