"""Redis faults under load: tqd's connections killed (CLIENT KILL), Redis
stalled longer than tqd's timeouts (DEBUG SLEEP), redis-server killed and
restarted (with an append-only file). Processing resumes after each, nothing
acknowledged is lost, and no worker stays wedged."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.helpers.daemon import wait_until
from tests.helpers.redis_server import RedisServer, start_server

from .kit import LONG, Ledger, Tqd, chaos_config, report, scale, store_tasks

SOCKET_TIMEOUT = 5.0  # RedisStorage's default: the stall must outlast it
STALL = SOCKET_TIMEOUT + 2.0


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone that writes every change to its AOF."""
    server = start_server(tmp_path, extra=("--appendonly", "yes", "--appendfsync", "always",
                                           "--enable-debug-command", "yes"))
    yield server
    server.stop()


class Producer:
    """Enqueues a task every few milliseconds from a thread; keeps the 201 ids."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.acked: list[str] = []
        self.refused: dict[int, int] = {}
        self.unanswered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        body = json.dumps({"name": "record", "payload": {"seconds": 0.05}})
        while not self._stop.is_set():
            try:
                conn.request("POST", "/v1/tasks", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = json.loads(resp.read())
            except (OSError, http.client.HTTPException):
                self.unanswered += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                continue
            if resp.status == 201:
                self.acked.append(data["id"])
            else:
                self.refused[resp.status] = self.refused.get(resp.status, 0) + 1
            time.sleep(0.01)

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_processing_resumes_after_redis_faults(durable_redis: RedisServer, tmp_path: Path) -> None:
    rounds = scale(1, 5)  # each round: CLIENT KILL, DEBUG SLEEP, restart
    ledger = Ledger(tmp_path / "ledger")
    prefix = "tqdchaos"
    config = chaos_config(tmp_path, redis_prefix=prefix, extra="[worker]\nconcurrency = 10\n")
    tqd = Tqd(durable_redis.url, config, ledger.path)
    tqd.start()
    admin = redis.Redis(port=durable_redis.port)
    resumed: dict[str, float] = {}

    def completions() -> int:
        return len(ledger.read().ends())

    def resumes(fault: str, began: float) -> None:
        """Wait until tasks complete again; record how long after ``began``."""
        before = completions()
        wait_until(lambda: completions() >= before + 20, timeout=60, interval=0.05,
                   message=f"tasks completing again after {fault}")
        resumed[fault] = max(resumed.get(fault, 0.0), time.monotonic() - began)

    with Producer(tqd.url) as producer:
        wait_until(lambda: completions() >= 50, timeout=60, message="work under way")
        for _ in range(rounds):
            began = time.monotonic()
            killed = admin.client_kill_filter(_type="normal", skipme=True)
            killed += admin.client_kill_filter(_type="pubsub", skipme=True)
            assert killed >= 2  # tqd's command and subscriber connections at least
            resumes("CLIENT KILL", began)

            began = time.monotonic()
            redis.Redis(port=durable_redis.port, socket_timeout=STALL + 5).execute_command(
                "DEBUG", "SLEEP", STALL)
            stalled = time.monotonic() - began
            assert stalled >= STALL * 0.9
            resumes(f"DEBUG SLEEP {STALL:g}", time.monotonic())  # from the end of the stall

            began = time.monotonic()
            durable_redis.restart()  # SIGKILL, then a new server on the same AOF
            admin = redis.Redis(port=durable_redis.port)
            resumes("redis-server restart", began)
        time.sleep(1.0)  # a last second of load after the faults
    acked = producer.acked
    wait_until(lambda: set(acked) <= set(ledger.read().ends()), timeout=120, interval=0.2,
               message="every acknowledged task ran")
    # no worker wedged: the pool holds nothing once the work is done
    wait_until(lambda: all(not w["running"] for w in tqd.daemon.call("GET", "/v1/workers")[1]
                           ["workers"]), timeout=30, message="every worker idle")
    assert tqd.stop() == 0
    final = {t.id: t for t in store_tasks(durable_redis.url, prefix=prefix)}
    ends = ledger.read().ends()
    lost = [i for i in acked if i not in final or final[i].state != "completed"]
    duplicates = sum(n - 1 for n in ends.values())
    # a lease whose answer was lost with a connection comes back after its
    # visibility timeout: counted, not a loss
    reclaimed = sum(int(n) for n in re.findall(r"reclaimed (\d+) tasks whose lease", tqd.stderr))
    report("Redis faults [redis]", rounds=rounds, acknowledged=len(acked), lost=len(lost),
           duplicates=duplicates, reclaimed=reclaimed, refused=json.dumps(producer.refused),
           unanswered=producer.unanswered,
           **{f"resumed_after_{k.replace(' ', '_')}_s": v for k, v in resumed.items()}, long=LONG)
    assert lost == []
    # nothing failed but the store: its outages are WARNING lines (the 503s
    # they caused throttled), never an ERROR nor a traceback
    unexpected = [ln for ln in tqd.stderr.splitlines() if " ERROR " in ln]
    assert unexpected == [], unexpected
    assert "Traceback" not in tqd.stderr, tqd.stderr
