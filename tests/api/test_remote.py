"""The pull API of remote workers against a real daemon (SQLite and Redis):
lease, heartbeat, complete, fail, settle, stale tokens, expired leases."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers.daemon import ROOT, Daemon, tqd_env, wait_until
from tests.helpers.redis_server import redis_server  # noqa: F401
from tqd.client import ApiError, Client

CONFIG = """
[roles]
supervisor_interval = 0.2
scheduler_interval = 0.2

[tasks.basic]
handler = {kind = "remote"}
queue = "basic"

[tasks.other]
handler = {kind = "remote"}
queue = "basic"

[tasks.stale]
handler = {kind = "remote"}
queue = "stale"

[tasks.expire]
handler = {kind = "remote"}
queue = "expire"
max_attempts = 3

[tasks.poll]
handler = {kind = "remote"}
queue = "poll"

[tasks.batch]
handler = {kind = "remote"}
queue = "batch"
max_attempts = 2
"""


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def daemon(request, tmp_path_factory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("remote")
    config = tmp / "tqd.toml"
    text = CONFIG
    if request.param == "redis":
        storage = request.getfixturevalue("redis_server").url
        text = f'[redis]\nprefix = "t{uuid.uuid4().hex[:10]}"\n' + CONFIG
    else:
        storage = f"sqlite://{tmp}/tqd.db"
    config.write_text(text)
    with Daemon(storage, config=config) as d:
        yield d


@pytest.fixture
def client(daemon: Daemon) -> Client:
    return Client(daemon.url, timeout=10)


def ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def refused(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_lease_heartbeat_complete_and_fail(client: Client):
    a = client.enqueue("basic", {"n": 1})
    b = client.enqueue("other", {"n": 2})
    leased = client.lease("basic", 5, worker="gpu-box-1")
    assert [t["id"] for t in leased] == [a["id"], b["id"]]
    for t in leased:
        assert t["state"] == "processing"
        assert t["worker"] == "gpu-box-1"
        assert t["lease"]["token"]
        assert ts(t["lease"]["expires_at"]) == pytest.approx(ts(t["started_at"]) + 30, abs=0.01)
    ta, tb = leased

    beat = client.heartbeat(ta["id"], ta["lease"]["token"], extend=120)
    assert beat["id"] == ta["id"]
    assert ts(beat["lease"]["expires_at"]) >= time.time() + 110

    assert client.complete(ta["id"], ta["lease"]["token"], {"ok": True, "n": 1}) == {
        "id": ta["id"], "state": "completed"}
    done = client.get(ta["id"])
    assert done["state"] == "completed"
    assert done["result"] == {"ok": True, "n": 1}
    assert done["attempts"] == 1

    answer = client.fail(tb["id"], tb["lease"]["token"], "GPU melted", retry=False)
    assert answer == {"id": tb["id"], "state": "failed", "retry_at": None}
    dead = client.get(tb["id"])
    assert dead["state"] == "failed"
    assert dead["error"]["kind"] == "remote"
    assert dead["error"]["message"] == "GPU melted"
    assert dead["error"]["attempt"] == 1


def test_a_failure_with_attempts_left_is_retried_at_the_delay(client: Client):
    task = client.enqueue("basic", max_attempts=3)
    [leased] = client.lease("basic")
    assert leased["id"] == task["id"]
    before = time.time()
    answer = client.fail(task["id"], leased["lease"]["token"], "try later", delay=60)
    assert answer["state"] == "scheduled"
    again = client.get(task["id"])
    assert again["state"] == "scheduled"
    assert before + 59 <= ts(again["run_at"]) <= time.time() + 61
    assert again["attempts"] == 1


def test_a_stale_or_foreign_token_answers_409_and_changes_nothing(client: Client):
    task = client.enqueue("stale", {"x": 1})
    [leased] = client.lease("stale")
    before = client.get(task["id"])
    for call, args in (
        (client.complete, (task["id"], "not-the-token", {"stolen": True})),
        (client.fail, (task["id"], "not-the-token", "nope")),
        (client.heartbeat, (task["id"], "not-the-token")),
    ):
        err = refused(call, *args)
        assert (err.status, err.code) == (409, "stale_lease")
    assert client.get(task["id"]) == before
    # A token of another task is foreign too.
    other = client.enqueue("stale")
    [other_lease] = client.lease("stale")
    err = refused(client.complete, task["id"], other_lease["lease"]["token"])
    assert err.status == 409
    assert client.get(task["id"]) == before
    # An unknown task is 404.
    err = refused(client.complete, "00000000000000000000", leased["lease"]["token"])
    assert err.status == 404
    # A settled lease is stale afterwards.
    client.complete(task["id"], leased["lease"]["token"], 1)
    assert refused(client.complete, task["id"], leased["lease"]["token"], 2).status == 409
    assert client.get(task["id"])["result"] == 1
    client.complete(other["id"], other_lease["lease"]["token"])


def test_an_expired_lease_is_taken_by_another_worker(client: Client):
    task = client.enqueue("expire", {"job": 7})
    [first] = client.lease("expire", visibility_timeout=0.5, worker="worker-a")
    assert ts(first["lease"]["expires_at"]) == pytest.approx(ts(first["started_at"]) + 0.5, abs=0.01)
    # The supervisor takes it back once the lease runs out; worker b long-polls for it.
    [second] = client.lease("expire", wait=20, worker="worker-b")
    assert second["id"] == task["id"]
    assert second["worker"] == "worker-b"
    assert second["attempts"] == 1
    assert second["errors"][0]["kind"] == "lost"
    assert second["lease"]["token"] != first["lease"]["token"]
    # Worker a comes back late: refused, and worker b's outcome stands.
    assert refused(client.complete, task["id"], first["lease"]["token"], "a").status == 409
    client.complete(task["id"], second["lease"]["token"], "b")
    assert client.get(task["id"])["result"] == "b"


def test_a_long_poll_wakes_when_a_task_arrives(client: Client):
    assert client.lease("poll", wait=0.3) == []  # waits, then answers empty
    got: list = []
    started = time.monotonic()
    poller = threading.Thread(target=lambda: got.append(client.lease("poll", 3, wait=30)))
    poller.start()
    time.sleep(0.3)  # let the poll reach the server; the test holds without it too
    task = client.enqueue("poll", {"late": True})
    poller.join(40)
    assert [t["id"] for t in got[0]] == [task["id"]]
    assert time.monotonic() - started < 25  # woken by the enqueue, not by the end of the wait
    client.complete(task["id"], got[0][0]["lease"]["token"])


def test_batch_settle_and_release(client: Client):
    ids = [client.enqueue("batch", {"i": i})["id"] for i in range(4)]
    leased = client.lease("batch", 4)
    assert [t["id"] for t in leased] == ids
    tok = {t["id"]: t["lease"]["token"] for t in leased}
    results = client.settle([
        {"id": ids[0], "token": tok[ids[0]], "outcome": "complete", "result": {"i": 0}},
        {"id": ids[1], "token": tok[ids[1]], "outcome": "fail", "error": "bad", "retry": False},
        {"id": ids[2], "token": "wrong", "outcome": "complete", "result": "x"},
        {"id": ids[3], "token": tok[ids[3]], "outcome": "release"},
        {"id": "00000000000000000000", "token": "x", "outcome": "fail", "error": "?"},
    ])
    assert [r["ok"] for r in results] == [True, True, False, True, False]
    assert [r.get("state") for r in results] == ["completed", "failed", None, "pending", None]
    assert results[2]["error"]["code"] == "stale_lease"
    assert results[4]["error"]["code"] == "not_found"
    assert client.get(ids[0])["result"] == {"i": 0}
    assert client.get(ids[1])["state"] == "failed"
    assert client.get(ids[2])["state"] == "processing"
    released = client.get(ids[3])
    assert (released["state"], released["attempts"]) == ("pending", 0)
    # Clean up what is still leased or pending.
    rest = client.lease("batch", 4)
    assert [t["id"] for t in rest] == [ids[3]]
    client.settle([{"id": ids[2], "token": tok[ids[2]], "outcome": "complete"},
                   {"id": ids[3], "token": rest[0]["lease"]["token"], "outcome": "complete"}])
    # Each attempt leased and settled through this daemon has its duration
    # measured: four (the released lease ran nothing); none of other names.
    metrics = urllib.request.urlopen(client.url + "/metrics", timeout=10).read().decode()
    assert 'tqd_task_duration_seconds_count{queue="batch",name="batch"} 4\n' in metrics
    assert 'tqd_task_duration_seconds_count{queue="batch",name="other"}' not in metrics


def test_only_remote_queues_can_be_leased_and_they_hold_only_remote_tasks(client: Client):
    err = refused(client.lease, "default")
    assert err.status == 404
    assert "remote queues: basic, batch, expire, poll, stale" in err.message
    err = refused(client.enqueue, "basic", queue="default")
    assert err.status == 400
    err = refused(client.enqueue, "tqd.noop", queue="basic")
    assert (err.status, err.code) == (400, "bad_request")
    assert "leased by remote workers" in err.message


def test_bad_bodies_name_the_field(daemon: Daemon):
    for body, field in (({"max": 0}, "max"), ({"wait": -1}, "wait"), ({"wait": 1e9}, "wait"),
                        ({"visibility_timeout": 0}, "visibility_timeout"), ({"nope": 1}, "nope")):
        status, answer = daemon.call("POST", "/v1/queues/basic/lease", body)
        assert status == 400, body
        assert answer["error"]["message"].startswith(field), answer
    status, answer = daemon.call("POST", "/v1/tasks/x/complete", {"result": 1})
    assert status == 400
    assert answer["error"]["message"] == "token: required field missing"
    status, answer = daemon.call("POST", "/v1/tasks/settle", {"outcomes": []})
    assert status == 400


def test_the_local_pool_leaves_remote_tasks_alone(client: Client):
    remote = client.enqueue("basic")
    local = client.enqueue("tqd.noop")
    assert client.wait(local["id"], timeout=10)["state"] == "completed"
    assert client.get(remote["id"])["state"] == "pending"
    [leased] = client.lease("basic")
    client.complete(remote["id"], leased["lease"]["token"])


def test_a_config_mixing_remote_and_local_tasks_in_a_queue_is_refused(tmp_path: Path):
    config = tmp_path / "tqd.toml"
    config.write_text('[tasks.gpu]\nhandler = {kind = "remote"}\n')
    out = subprocess.run([sys.executable, "-m", "tqd", "config", "check", str(config)],
                         capture_output=True, text=True, env=tqd_env(), cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"tqd: {config}: tasks.gpu: queue 'default' holds remote tasks (gpu) and "
        "'tqd.echo', which runs here; give remote tasks a queue of their own")


def test_wait_ends_quickly_when_the_daemon_stops(tmp_path: Path):
    config = tmp_path / "tqd.toml"
    config.write_text('[tasks.r]\nhandler = {kind = "remote"}\nqueue = "r"\n')
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as d:
        got: list = []
        c = Client(d.url, timeout=10)
        poller = threading.Thread(target=lambda: got.append(c.lease("r", wait=60)))
        poller.start()
        wait_until(lambda: "r" in {q["name"] for q in c.queues()})
        time.sleep(0.3)  # let the poll reach the server
        started = time.monotonic()
        assert d.stop() == 0
        poller.join(30)
        assert got == [[]]
        assert time.monotonic() - started < 20


def test_a_reload_that_adds_a_remote_task_takes_its_queue_from_the_pool(tmp_path: Path):
    config = tmp_path / "tqd.toml"
    config.write_text("")
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as d:
        c = Client(d.url, timeout=10)
        assert refused(c.lease, "gpu").status == 404
        config.write_text('[tasks.render]\nhandler = {kind = "remote"}\nqueue = "gpu"\n')
        d.signal(signal.SIGHUP)

        def leasable() -> bool:
            try:
                return c.lease("gpu") == []
            except ApiError:
                return False

        wait_until(leasable, timeout=20, message="the reload")
        task = c.enqueue("render", {"frame": 1})
        local = c.enqueue("tqd.noop")
        assert c.wait(local["id"], timeout=10)["state"] == "completed"
        assert c.get(task["id"])["state"] == "pending"  # the local pool leaves it alone
        [leased] = c.lease("gpu")
        assert leased["id"] == task["id"]
