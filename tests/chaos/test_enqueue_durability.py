"""Enqueue durability: SIGKILL tqd during a burst of enqueues; every id that
was answered 201 exists afterwards."""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from .conftest import Store
from .kit import LONG, Tqd, chaos_config, report, scale, store_tasks

CLIENTS = 4


def _burst(url: str, stop: threading.Event, acked: list[str], failed: list[int]) -> None:
    """Enqueue one task or a batch of ten, over and over, until the server dies."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    n = 0
    while not stop.is_set():
        n += 1
        batch = n % 3 == 0
        body = ({"tasks": [{"name": "tqd.noop", "payload": n}] * 10} if batch
                else {"name": "tqd.noop", "payload": n})
        try:
            conn.request("POST", "/v1/tasks/batch" if batch else "/v1/tasks", json.dumps(body),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = json.loads(resp.read())
        except (OSError, http.client.HTTPException):
            failed.append(n)  # no answer: the task may or may not exist
            return
        if resp.status == 201:
            acked.extend(t["id"] for t in data["tasks"]) if batch else acked.append(data["id"])


def test_every_acknowledged_enqueue_survives_a_kill(store: Store, tmp_path: Path) -> None:
    kills = scale(4, 30)
    seed = int(os.environ.get("TQD_CHAOS_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    config = chaos_config(tmp_path, redis_prefix=store.prefix, extra="[worker]\nenabled = false\n")
    tqd = Tqd(store.url, config, tmp_path / "ledger")
    acked: list[str] = []
    unanswered: list[int] = []
    for _ in range(kills):
        tqd.start()
        stop = threading.Event()
        clients = [threading.Thread(target=_burst, args=(tqd.url, stop, acked, unanswered))
                   for _ in range(CLIENTS)]
        for c in clients:
            c.start()
        time.sleep(rng.uniform(0.3, 1.2))  # the random moment of the kill
        tqd.kill()
        stop.set()
        for c in clients:
            c.join(15)
            assert not c.is_alive()
    stored = {t.id for t in store_tasks(store.url, prefix=store.prefix)}
    lost = [i for i in acked if i not in stored]
    report(f"enqueue durability [{store.backend}]", kills=kills, acknowledged=len(acked),
           unanswered_at_kills=len(unanswered), stored=len(stored), lost=len(lost), seed=seed,
           long=LONG)
    assert lost == []
    assert len(acked) > kills * 10  # the bursts did enqueue
    # a request without an answer may have been stored or not; nothing else was
    assert len(stored) <= len(acked) + 10 * len(unanswered)
