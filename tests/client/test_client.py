"""Client and AsyncClient round trips against a real daemon."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.daemon import ROOT, Daemon, tqd_env
from tqd.client import ApiError, AsyncClient, Client, Unreachable
from tqd.config import DEFAULT_URL


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("client")
    config = tmp / "tqd.toml"
    config.write_text('[tasks.job]\nhandler = {kind = "remote"}\nqueue = "jobs"\n')
    with Daemon(f"sqlite://{tmp}/tqd.db", config=config) as d:
        yield d


def test_sync_round_trips(daemon: Daemon):
    c = Client(daemon.url)
    task = c.enqueue("tqd.echo", {"hello": "world"}, priority=5, idempotency_key="k-1")
    assert task["state"] == "pending"
    assert task["priority"] == 5
    assert c.enqueue("tqd.echo", {"other": 1}, idempotency_key="k-1")["id"] == task["id"]
    done = c.wait(task["id"], timeout=10)
    assert done["state"] == "completed"
    assert done["result"] == {"hello": "world"}
    assert c.get(task["id"])["result"] == {"hello": "world"}

    many = c.enqueue_many([{"name": "tqd.noop", "payload": i} for i in range(3)])
    assert len(many) == 3
    for t in many:
        assert c.wait(t["id"], timeout=10)["state"] == "completed"
    page = c.list(name="tqd.noop", limit=2)
    assert [t["id"] for t in page["tasks"]] == [many[2]["id"], many[1]["id"]]
    assert page["next_cursor"]
    rest = c.list(name="tqd.noop", limit=2, cursor=page["next_cursor"])
    assert [t["id"] for t in rest["tasks"]] == [many[0]["id"]]

    later = c.enqueue("tqd.noop", delay=3600)
    assert later["state"] == "scheduled"
    assert c.cancel(later["id"])["state"] == "cancelled"
    assert c.retry(later["id"])["state"] == "pending"
    assert c.wait(later["id"], timeout=10)["state"] == "completed"
    c.delete(later["id"])
    with pytest.raises(ApiError) as caught:
        c.get(later["id"])
    assert (caught.value.status, caught.value.code) == (404, "not_found")

    run_at = datetime.now(UTC) + timedelta(hours=1)
    planned = c.enqueue("tqd.noop", run_at=run_at)
    assert planned["state"] == "scheduled"
    c.cancel(planned["id"])

    assert c.pause("default")["paused"] is True
    assert {q["name"]: q["paused"] for q in c.queues()}["default"] is True
    assert c.resume("default")["paused"] is False
    assert c.queue("default")["counts"]["completed"] == 4  # echo + 3 noop; one was deleted


def test_sync_errors(daemon: Daemon, unused_tcp_port_factory):
    c = Client(daemon.url)
    with pytest.raises(ApiError) as caught:
        c.enqueue("no.such.task")
    assert (caught.value.status, caught.value.code) == (422, "unknown_task")
    with pytest.raises(ValueError, match="timezone-aware"):
        c.enqueue("tqd.noop", run_at=datetime(2030, 1, 1))
    with pytest.raises(Unreachable, match="cannot reach tqd"):
        Client(f"http://127.0.0.1:{unused_tcp_port_factory()}", timeout=2).queues()


def test_client_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("TQD_URL", raising=False)
    monkeypatch.delenv("TQD_TOKEN", raising=False)
    assert Client().url == DEFAULT_URL
    assert Client().token is None
    monkeypatch.setenv("TQD_URL", "http://example.invalid:1/")
    monkeypatch.setenv("TQD_TOKEN", "t0k")
    assert Client().url == "http://example.invalid:1"
    assert Client().token == "t0k"


async def test_async_round_trips(daemon: Daemon):
    async with AsyncClient(daemon.url) as c:
        task = await c.enqueue("tqd.echo", [1, 2, 3], max_attempts=1)
        done = await c.wait(task["id"], timeout=10)
        assert done["result"] == [1, 2, 3]
        assert (await c.get(task["id"]))["state"] == "completed"
        many = await c.enqueue_many([{"name": "tqd.echo", "payload": i} for i in range(2)])
        results = [(await c.wait(t["id"], timeout=10))["result"] for t in many]
        assert results == [0, 1]
        page = await c.list(name="tqd.echo", limit=1)
        assert page["tasks"][0]["id"] == many[1]["id"]
        later = await c.enqueue("tqd.noop", delay=3600)
        assert (await c.cancel(later["id"]))["state"] == "cancelled"
        assert (await c.retry(later["id"]))["state"] == "pending"
        await c.wait(later["id"], timeout=10)
        await c.delete(later["id"])
        assert (await c.pause("default"))["paused"] is True
        assert (await c.resume("default"))["paused"] is False
        assert "default" in {q["name"] for q in await c.queues()}

        # The pull API, one call each.
        job = await c.enqueue("job", {"n": 1})
        [leased] = await c.lease("jobs", 10, wait=5)
        assert leased["id"] == job["id"]
        token = leased["lease"]["token"]
        assert (await c.heartbeat(job["id"], token, extend=60))["lease"]["token"] == token
        assert (await c.complete(job["id"], token, {"done": True}))["state"] == "completed"
        with pytest.raises(ApiError) as caught:
            await c.fail(job["id"], token, "late")
        assert caught.value.code == "stale_lease"
        with pytest.raises(ApiError) as caught:
            await c.enqueue("no.such.task")
        assert caught.value.status == 422


async def test_async_unreachable(unused_tcp_port_factory):
    async with AsyncClient(f"http://127.0.0.1:{unused_tcp_port_factory()}", timeout=2) as c:
        with pytest.raises(Unreachable):
            await c.queues()


def test_the_cli_uses_the_client(daemon: Daemon):
    """The CLI goes through tqd.client; importing it stays free of aiohttp."""
    code = ("import sys, tqd.cli, tqd.client; from tqd.cli import main; "
            f"status = main(['--url', '{daemon.url}', 'queues', '--json']); "
            "assert 'aiohttp' not in sys.modules, 'aiohttp was imported'; sys.exit(status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=tqd_env(), cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert '"name": "default"' in out.stdout
