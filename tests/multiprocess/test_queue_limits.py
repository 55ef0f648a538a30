"""Issue 8's promises with real daemons: queue concurrency and rate limits,
fair groups, weighted and strict dispatch.

Each runs ``tqd serve`` subprocesses, on SQLite (one process) and, where
the promise is about many processes, on a real redis-server shared by two.
The handler (``pymods/tqd_limits_ledger.py``) appends a line to a ledger
file when it starts and when it ends; the tests measure concurrency, rate
and waits from those lines, as a user's handlers would see them, not from
what tqd says of itself. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.daemon import Daemon, wait_until

PYMODS = Path(__file__).parent / "pymods"
TASK = "led"

#: The rate test's window, seconds (issue 8: "within 5% over a minute").
RATE_WINDOW = 60.0


@dataclass(frozen=True)
class Entry:
    what: str  # "start" or "end"
    at: float
    task: str
    queue: str
    pid: int


def read_ledger(path: Path) -> list[Entry]:
    """The ledger's lines, in time order (an end before a start at the same time)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        what, at, task, queue, pid = line.split()
        out.append(Entry(what, float(at), task, queue, int(pid)))
    out.sort(key=lambda e: (e.at, e.what == "start"))
    return out


def max_overlap(entries: list[Entry], queue: str) -> int:
    """The most tasks of ``queue`` between their start and end lines at once."""
    now = peak = 0
    for e in entries:
        if e.queue == queue:
            now += 1 if e.what == "start" else -1
            peak = max(peak, now)
    return peak


def starts(entries: list[Entry], queue: str | None = None) -> list[Entry]:
    return [e for e in entries if e.what == "start" and (queue is None or e.queue == queue)]


def config_text(*, concurrency: int, prefix: str | None = None, worker: str = "", extra: str = "") -> str:
    head = f'python_path = ["{PYMODS}"]\nshutdown_grace = 1\n'
    if prefix is not None:
        head += f'[redis]\nprefix = "{prefix}"\n'
    return (head + f"[worker]\nconcurrency = {concurrency}\n{worker}"
            + f'[tasks.{TASK}]\nhandler = "tqd_limits_ledger:run"\n' + extra)


class Cluster:
    """Daemons started by one test, all appending to one ledger."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ledger = tmp / "ledger.txt"
        self.daemons: list[Daemon] = []

    def start(self, storage: str, config: str, n: int = 1) -> list[Daemon]:
        path = self.tmp / f"tqd-{len(self.daemons)}.toml"
        path.write_text(config)
        started = [Daemon(storage, config=path, env={"LIMITS_LEDGER": str(self.ledger)},
                          args=["--log-level", "info"]).start() for _ in range(n)]
        self.daemons += started
        return started

    def entries(self) -> list[Entry]:
        return read_ledger(self.ledger)

    def stop(self) -> None:
        for d in self.daemons:
            if d.proc is not None and d.proc.poll() is None:
                try:
                    d.stop(timeout=20)
                except Exception:
                    d.kill()
        for d in self.daemons:
            assert "Traceback" not in d.stderr, d.stderr


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def enqueue(d: Daemon, queue: str, n: int, seconds: float, group: str | None = None) -> list[str]:
    """``n`` ledger tasks into ``queue`` (in batches); their ids."""
    item: dict = {"name": TASK, "queue": queue, "payload": {"seconds": seconds}}
    if group is not None:
        item["group"] = group
    ids: list[str] = []
    while len(ids) < n:
        size = min(200, n - len(ids))
        status, body = d.call("POST", "/v1/tasks/batch", {"tasks": [item] * size})
        assert status == 201, body
        ids += [t["id"] for t in body["tasks"]]
    return ids


def counts(d: Daemon, queue: str) -> dict[str, int]:
    status, body = d.call("GET", f"/v1/queues/{queue}")
    assert status == 200, body
    return body["counts"]


def control(d: Daemon, queue: str, action: str) -> None:
    status, body = d.call("POST", f"/v1/queues/{queue}/{action}")
    assert status == 200, body


Storage = Callable[[Cluster, str, int], list[Daemon]]


@pytest.fixture(params=["sqlite", "redis-2"])
def start(request, tmp_path: Path) -> Storage:
    """``start(cluster, extra_config, concurrency)``: one daemon on SQLite, or
    two sharing a real Redis."""
    if request.param == "sqlite":
        def on_sqlite(cluster: Cluster, extra: str, concurrency: int) -> list[Daemon]:
            return cluster.start(f"sqlite://{tmp_path}/tqd.db", config_text(concurrency=concurrency, extra=extra))
        return on_sqlite
    server = request.getfixturevalue("redis_server")
    prefix = request.getfixturevalue("redis_prefix")

    def on_redis(cluster: Cluster, extra: str, concurrency: int) -> list[Daemon]:
        return cluster.start(server.url, config_text(concurrency=concurrency, prefix=prefix, extra=extra), n=2)
    return on_redis


# -- concurrency ----------------------------------------------------------------


def test_queue_concurrency_is_never_exceeded_and_is_reached(cluster: Cluster, start: Storage) -> None:
    """``[queues.c] concurrency = 3``: never more than 3 handlers of c at once,
    across every process, though each process has 20 slots."""
    daemons = start(cluster, "[queues.c]\nconcurrency = 3\n", 20)
    ids = enqueue(daemons[0], "c", 80, 0.05)
    wait_until(lambda: counts(daemons[0], "c")["completed"] == len(ids), 60, 0.1, "every task of c done")
    entries = cluster.entries()
    peak = max_overlap(entries, "c")
    pids = Counter(e.pid for e in starts(entries, "c"))
    print(f"\nconcurrency 3 over {len(daemons)} process(es): peak {peak}, starts per process {dict(pids)}")
    assert len(starts(entries, "c")) == len(ids)
    assert peak <= 3
    assert peak == 3  # the limit is used, not merely respected
    assert len(pids) == len(daemons)  # every process took part


# -- rate -------------------------------------------------------------------------


def test_rate_limit_holds_within_five_percent_over_a_minute(cluster: Cluster, start: Storage) -> None:
    """``rate_limit = 10`` per second (burst 10): after the first burst, the
    completions in a 60 s window are 600 within 5%."""
    rate = 10
    daemons = start(cluster, f"[queues.r]\nrate_limit = {rate}\nrate_interval = 1\n", 20)
    # More than the window can take, so the queue never runs dry in it.
    enqueue(daemons[0], "r", int(rate * (RATE_WINDOW + 10)), 0.01)

    def ends() -> list[float]:
        return [e.at for e in cluster.entries() if e.what == "end" and e.queue == "r"]

    first = wait_until(ends, 20, 0.1, "a first task of r")[0]
    # The bucket starts full: the burst runs at once. The window starts after it.
    begin = first + 0.5
    wait_until(lambda: time.time() > begin + RATE_WINDOW + 0.5, RATE_WINDOW + 10, 0.5, "the window")
    done = ends()
    in_window = sum(1 for t in done if begin <= t < begin + RATE_WINDOW)
    burst = sum(1 for t in done if t < begin)
    expected = rate * RATE_WINDOW
    pids = Counter(e.pid for e in starts(cluster.entries(), "r"))
    print(f"\nrate {rate}/s over {len(daemons)} process(es): {in_window} completions in "
          f"{RATE_WINDOW:g}s (expected {expected:g}, {100 * (in_window / expected - 1):+.1f}%), "
          f"{burst} in the first 0.5s, starts per process {dict(pids)}")
    assert abs(in_window - expected) <= 0.05 * expected
    assert burst <= rate + 5 + 2  # the burst and the tokens of its half second


# -- fair groups --------------------------------------------------------------------


def test_a_small_group_waits_about_one_task_behind_a_large_one(cluster: Cluster, start: Storage) -> None:
    """500 tasks of group "big" (50 ms each) fill every slot; one task of
    group "small" enqueued then starts as soon as a slot frees, not after the
    backlog: its wait is about one task's run time."""
    run_time = 0.05
    daemons = start(cluster, "", 2)
    enqueue(daemons[0], "f", 500, run_time, group="big")
    wait_until(lambda: len(starts(cluster.entries(), "f")) >= 10, 20, 0.05, "the big group running")
    sent = time.time()
    status, small = daemons[-1].call("POST", "/v1/tasks", {"name": TASK, "queue": "f", "group": "small",
                                                         "payload": {"seconds": run_time}})
    assert status == 201, small

    def small_start() -> float | None:
        return next((e.at for e in starts(cluster.entries()) if e.task == small["id"]), None)

    began = wait_until(small_start, 20, 0.01, "the small group's task started")
    wait = began - sent
    slots = 2 * len(daemons)
    backlog = counts(daemons[0], "f")["pending"]
    print(f"\nfair groups over {len(daemons)} process(es), {slots} slots: the small group's task "
          f"waited {wait * 1000:.0f} ms (one task runs {run_time * 1000:.0f} ms); FIFO would have "
          f"waited about {backlog * run_time / slots:.1f} s behind {backlog} big tasks still pending")
    assert backlog > 300  # the backlog was there: the bound below means something
    # A slot frees within one run time; the rest is the lease and the start
    # on a busy two-core machine: 10 run times in all.
    assert wait < 10 * run_time


# -- dispatch among queues (one process: it is this process's slots) ---------------------


def test_weighted_queues_start_tasks_in_proportion(cluster: Cluster, tmp_path: Path) -> None:
    (d,) = cluster.start(f"sqlite://{tmp_path}/tqd.db", config_text(
        concurrency=4, extra="[queues.wa]\nweight = 3\n[queues.wb]\nweight = 1\n"))
    for q in ("wa", "wb"):
        control(d, q, "pause")
        enqueue(d, q, 200, 0.02)
    control(d, "wa", "resume")
    control(d, "wb", "resume")
    # While both have work: the first 200 starts (wa would need 200 to run dry).
    first = wait_until(lambda: (s := starts(cluster.entries())) and len(s) >= 200 and s[:200],
                       60, 0.1, "200 starts")
    by_queue = Counter(e.queue for e in first)
    ratio = by_queue["wa"] / by_queue["wb"]
    print(f"\nweighted 3:1, 4 slots: first 200 starts {dict(by_queue)}, ratio {ratio:.2f}")
    assert 3 * 0.8 <= ratio <= 3 * 1.2


def test_strict_queues_serve_a_later_queue_only_when_the_earlier_has_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    (d,) = cluster.start(f"sqlite://{tmp_path}/tqd.db", config_text(
        concurrency=4, worker='dispatch = "strict"\nqueues = ["first", "second"]\n'))
    for q in ("first", "second"):
        control(d, q, "pause")
        enqueue(d, q, 40, 0.02)
    control(d, "first", "resume")
    control(d, "second", "resume")
    entries = wait_until(lambda: (e := starts(cluster.entries())) and len(e) == 80 and e, 60, 0.1, "80 starts")
    order = [e.queue for e in entries]
    last_first = max(i for i, q in enumerate(order) if q == "first")
    first_second = order.index("second")
    print(f"\nstrict: last start of 'first' #{last_first}, first start of 'second' #{first_second}")
    assert last_first < first_second
