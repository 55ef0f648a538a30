"""The payload depth limit and the path checks, in process."""

from __future__ import annotations

from typing import Any

from tqd.api.limits import depth_exceeds


def nest(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_depth_exceeds() -> None:
    assert not depth_exceeds(1, 1)
    assert not depth_exceeds([], 1)
    assert depth_exceeds([[]], 1)
    assert not depth_exceeds(nest(32), 32)
    assert depth_exceeds(nest(33), 32)
    assert not depth_exceeds([{"a": [1, 2]}, {"b": {"c": 3}}], 3)
    assert depth_exceeds([{"a": [1, 2]}, {"b": {"c": [3]}}], 3)
    assert depth_exceeds(nest(50_000), 32)  # no recursion in the check itself


async def test_max_depth_is_configurable(make_client: Any) -> None:
    client = await make_client(api={"max_depth": 3})
    ok = await client.post("/v1/tasks", json={"name": "tqd.noop", "payload": {"a": [{"b": 1}]}})
    assert ok.status == 201
    resp = await client.post("/v1/tasks", json={"name": "tqd.noop", "payload": {"a": [{"b": [1]}]}})
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == (
        "payload: nested deeper than 3 levels (the limit, [api] max_depth)"
    )
    # a body with few brackets is never walked; one with many only when deep
    flat = {"name": "tqd.noop", "payload": [[1], [2], [3], [4], [5]]}
    assert (await client.post("/v1/tasks", json=flat)).status == 201


async def test_json_content_types(make_client: Any) -> None:
    client = await make_client()
    for ctype in ("application/json", "application/json; charset=utf-8", "application/vnd.tqd+json"):
        resp = await client.post("/v1/tasks", data=b'{"name": "tqd.noop"}',
                                 headers={"Content-Type": ctype})
        assert resp.status == 201, ctype
    resp = await client.post("/v1/tasks", data=b'{"name": "tqd.noop"}',
                             headers={"Content-Type": "text/json"})
    assert resp.status == 415
    # a POST without a body needs no type
    task = await (await client.post("/v1/tasks", json={"name": "tqd.noop", "delay": 60})).json()
    resp = await client.post(f"/v1/tasks/{task['id']}/cancel", headers={"Content-Type": "text/plain"})
    assert resp.status == 200
