"""GET /v1/stats: buckets fill as tasks run, and age out of each range."""

from __future__ import annotations

import aiohttp
import pytest

from tests.storage.redis.waiting import eventually
from tqd.clock import FakeClock
from tqd.config import load_config
from tqd.daemon import Daemon


@pytest.fixture
async def fake_time_tqd(tmp_path):
    """A tqd whose clock stands still until the test moves it (at 10 s past a minute)."""
    clock = FakeClock(1_800_000_010.0 - 1_800_000_010.0 % 60 + 10)
    config = load_config(None, env={}, overrides={
        "listen": "127.0.0.1:0", "storage": f"sqlite://{tmp_path}/tqd.db",
        "roles": {"stats_interval": 0.05}, "shutdown_grace": 1.0,
    })
    daemon = Daemon(config, clock=clock)
    await daemon.start()
    yield daemon, clock
    await daemon.stop()


async def get_stats(url: str, query: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/v1/stats?{query}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_buckets_fill_then_age_out(fake_time_tqd):
    tqd, clock = fake_time_tqd
    now = int(clock.now())
    async with aiohttp.ClientSession(base_url=tqd.url) as http:
        for queue in ("a", "a", "b"):
            async with http.post("/v1/tasks", json={"name": "tqd.noop", "queue": queue}) as r:
                assert r.status == 201

    async def recorded():
        body = await get_stats(tqd.url, "range=10m")
        last = body["series"][-1]
        return last["completed"] == 3 and body

    body = await eventually(recorded)
    assert (body["range"], body["step"], body["queue"]) == ("10m", 1, None)
    series = body["series"]
    assert len(series) == 600
    assert [p["t"] for p in series] == list(range(now - 599, now + 1))
    last = series[-1]
    assert (last["enqueued"], last["completed"], last["failed"]) == (3, 3, 0)
    assert last["latency_p50_ms"] is not None and last["latency_p99_ms"] >= last["latency_p50_ms"]
    assert all(p["enqueued"] == 0 and p["latency_p50_ms"] is None for p in series[:-1])

    only_a = (await get_stats(tqd.url, "range=10m&queue=a"))["series"][-1]
    assert (only_a["enqueued"], only_a["completed"]) == (2, 2)
    day = await get_stats(tqd.url, "range=24h")
    assert (day["step"], len(day["series"])) == (60, 1440)
    minute = day["series"][-1]
    assert minute["t"] == now - now % 60 and minute["completed"] == 3

    clock.advance(11 * 60)  # out of the 10 minutes, still in the day
    ten = (await get_stats(tqd.url, "range=10m"))["series"]
    assert sum(p["enqueued"] for p in ten) == 0
    day = (await get_stats(tqd.url, "range=24h"))["series"]
    assert [p["completed"] for p in day if p["completed"]] == [3]

    clock.advance(25 * 3600)
    day = (await get_stats(tqd.url, "range=24h"))["series"]
    assert sum(p["completed"] for p in day) == 0


@pytest.mark.parametrize("query", ["range=1h", "range=10", "queue=bad%20name", "queue=-a"])
async def test_bad_queries_are_refused_by_name(tqd, http, query):
    async with http.get(f"/v1/stats?{query}") as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith(query.split("=")[0] + ":")
