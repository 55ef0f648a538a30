"""SIGTERM drain: tasks shorter than the grace finish once, longer ones are
handed back at once when it ends, enqueues during the drain answer 503, and a
second signal exits at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers.daemon import wait_until

from .conftest import Store
from .kit import Ledger, Tqd, chaos_config, post, report, store_tasks

GRACE = 3.0


def _start_tasks(tqd: Tqd, ledger: Ledger, short: int, long: int) -> tuple[list[str], list[str]]:
    body = {"tasks": [{"name": "record", "payload": {"seconds": 1.0}}] * short
            + [{"name": "record", "payload": {"seconds": 120.0}}] * long}
    status, answer = post(tqd.url, "/v1/tasks/batch", body)
    assert status == 201, answer
    ids = [t["id"] for t in answer["tasks"]]
    wait_until(lambda: len({r.task_id for r in ledger.read().runs if r.kind == "start"}) == len(ids),
               timeout=30, message="every task started")
    return ids[:short], ids[short:]


def test_sigterm_drains(store: Store, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    config = chaos_config(tmp_path, redis_prefix=store.prefix, grace=GRACE)
    tqd = Tqd(store.url, config, ledger.path)
    tqd.start()
    short, long = _start_tasks(tqd, ledger, 5, 5)
    signalled = time.monotonic()
    tqd.daemon.signal(signal.SIGTERM)
    wait_until(lambda: "draining" in tqd.daemon.stderr, timeout=10, message="drain began")
    answers: list[tuple[int, str]] = []
    while tqd.daemon.proc.poll() is None:
        try:
            status, body = post(tqd.url, "/v1/tasks", {"name": "tqd.noop"}, timeout=5)
        except OSError:
            break  # the listener closed: tqd is exiting
        answers.append((status, body["error"]["code"] if status >= 400 else body["id"]))
        time.sleep(0.05)
    status = tqd.daemon.wait(60)
    drained_in = time.monotonic() - signalled
    tqd.stderr += tqd.daemon.stderr

    runs = ledger.read()
    ends = runs.ends()
    final = {t.id: t for t in store_tasks(store.url, prefix=store.prefix)}
    report(f"SIGTERM drain [{store.backend}]", grace_s=GRACE, drained_in_s=drained_in,
           short_finished=sum(final[i].state == "completed" for i in short),
           long_handed_back=sum(final[i].state == "pending" for i in long),
           enqueues_during_drain=len(answers), answered_503=sum(s == 503 for s, _ in answers))
    assert status == 0
    assert answers and all(a == (503, "shutting_down") for a in answers), answers
    for i in short:  # finished, once
        assert ends.get(i) == 1 and final[i].state == "completed" and final[i].attempts == 1
    for i in long:  # handed back when the grace ran out: pending, the attempt not counted
        assert i not in ends
        assert (final[i].state, final[i].attempts, final[i].lease_token) == ("pending", 0, None)
    assert "handed back 5 tasks that did not finish within the grace" in tqd.stderr
    assert drained_in >= GRACE * 0.9  # it did wait for the grace (the long tasks ran on)


def test_a_second_signal_exits_at_once(store: Store, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    config = chaos_config(tmp_path, redis_prefix=store.prefix, grace=60.0)
    tqd = Tqd(store.url, config, ledger.path)
    tqd.start()
    _, long = _start_tasks(tqd, ledger, 0, 3)
    tqd.daemon.signal(signal.SIGTERM)
    wait_until(lambda: "draining" in tqd.daemon.stderr, timeout=10, message="drain began")
    second = time.monotonic()
    tqd.daemon.signal(signal.SIGTERM)
    status = tqd.daemon.wait(30)
    exited_in = time.monotonic() - second
    final = {t.id: t for t in store_tasks(store.url, prefix=store.prefix)}
    report(f"second signal [{store.backend}]", grace_s=60.0, exited_in_s=exited_in)
    assert status == 1
    assert "second signal (SIGTERM): exiting at once" in tqd.daemon.stderr
    assert exited_in < 10  # far from the 60 s of grace
    # nothing was handed back: the leases stay until tqd starts again (SQLite)
    # or run out (Redis), and then count as a lost attempt
    assert all(final[i].state == "processing" for i in long)
