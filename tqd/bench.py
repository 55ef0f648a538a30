"""``tqd bench``: a load generator that measures a daemon over HTTP.

Phases, each against its own fresh queue:
  1. enqueue ``--tasks`` tasks with ``--concurrency`` keep-alive connections
     (one task per request, or ``--batch`` per request) into a paused queue;
  2. resume it and time until every task is completed;
  3. offer ``--rate`` tasks/s for ``--seconds`` and measure, per task, the
     time from the client's enqueue call to the task's ``started_at`` (when
     the worker took it and called its handler).
It prints one JSON line. Without ``--url`` it starts a daemon in its own
process on ``--storage`` (default: SQLite in a temporary directory) and stops
it afterwards. ``--lease-scaling`` instead measures the time to lease and
settle one task with 10,000 and with 1,000,000 tasks stored. ``--ws-clients
N`` keeps N /v1/events WebSocket clients (in another process) reading
throughout, to measure what live dashboards cost; ``daemon_cpu_s`` is the
CPU the daemon used, steadier than the rates on a busy machine, and
``process_cpu_s`` the part of it the process phase used.
``--queue-limits`` gives the enqueue/process queue a concurrency limit, a
rate limit and a group_concurrency that never bind (PATCH /v1/queues/NAME)
and enqueues its tasks in ``--groups`` fair groups (100; 0 for none): the cost of limits and
groups themselves, to compare with a run without it.

The HTTP client here is deliberately minimal (HTTP/1.1 keep-alive on raw
asyncio streams): a general-purpose client costs more CPU per request than
the server, and on a small machine it would measure itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
from datetime import datetime
from typing import Any

from tqd.errors import safe_url


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="storage URL for the daemon bench starts (default: SQLite in a temp dir)")
    p.add_argument("--url", help="measure a running daemon instead of starting one")
    p.add_argument("--config", help="tqd.toml for the daemon bench starts")
    p.add_argument("--tasks", type=int, default=20000, help="tasks in the enqueue and process phases")
    p.add_argument("--task", default="tqd.noop", help="task name to enqueue")
    p.add_argument("--concurrency", type=int, default=32, help="client connections")
    p.add_argument("--batch", type=int, default=1, help="tasks per enqueue request")
    p.add_argument("--rate", type=float, default=1000.0, help="tasks/s offered in the latency phase")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the latency phase")
    p.add_argument("--skip", default="", help="comma-separated phases to skip: enqueue,process,latency")
    p.add_argument("--ws-clients", type=int, default=0,
                   help="keep this many /v1/events WebSocket clients (another process) reading throughout")
    p.add_argument("--ws-clients-process", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    p.add_argument("--lease-scaling", action="store_true",
                   help="measure lease+settle of one task at 10k and 1M stored tasks (in-process)")
    p.add_argument("--queue-limits", action="store_true",
                   help="limits that never bind on the process queue, tasks in --groups groups "
                        "(what limits and fair groups cost)")
    p.add_argument("--groups", type=int, default=100,
                   help="with --queue-limits: fair groups the tasks are spread over (0: none, "
                        "the cost of the limits alone)")
    from tqd.bench_kinds import add_arguments as add_kind_arguments

    add_kind_arguments(p)


# -- a minimal HTTP/1.1 client ------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        token = os.environ.get("TQD_TOKEN")
        if token:  # a server with [[tokens]] (a write token enqueues)
            head += f"Authorization: Bearer {token}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + (body or b""))
        assert self._reader is not None
        header = await self._reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self._reader.readexactly(length) if length else b""
        return status, payload

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None


async def _call(conn: Connection, method: str, path: str, body: Any = None) -> Any:
    """One control request (each is idempotent). The control connection sits
    idle through a phase, longer than the server keeps an idle connection
    open on a busy machine: when the server closed it, ask again on a new one."""
    data = None if body is None else json.dumps(body).encode()
    try:
        status, payload = await conn.request(method, path, data)
    except (asyncio.IncompleteReadError, ConnectionError):
        await conn.close()
        status, payload = await conn.request(method, path, data)
    if status >= 400:
        raise RuntimeError(f"{method} {path} answered {status}: {payload[:200]!r}")
    return json.loads(payload) if payload else None


# -- phases -------------------------------------------------------------------


#: Limits far above what the bench can reach (``--queue-limits``): the
#: daemon's worker concurrency (100 by default) caps processing long before
#: them, and 100 groups share it, so no group nears its limit.
LIMITS_THAT_NEVER_BIND = {"concurrency": 1_000_000, "rate_limit": 100_000_000, "rate_interval": 1,
                          "group_concurrency": 10_000}


async def _enqueue_phase(host: str, port: int, queue: str, args: argparse.Namespace) -> float:
    per_request = max(1, args.batch)
    total = args.tasks
    next_index = 0
    groups = getattr(args, "groups", 0) if getattr(args, "queue_limits", False) else 0
    item = {"name": args.task, "queue": queue}
    # With groups each request body names them in turn; the bodies are
    # encoded once, ahead, so the client costs the same either way.
    items = [{**item, "group": f"g{i}"} for i in range(groups)] or [item]
    singles = [json.dumps(it).encode() for it in items]
    batch_items = [items[i % len(items)] for i in range(per_request)]
    batch_body = json.dumps({"tasks": batch_items}).encode()

    async def worker() -> None:
        nonlocal next_index
        conn = Connection(host, port)
        try:
            while next_index < total:
                n = min(per_request, total - next_index)
                next_index += n
                if per_request == 1:
                    status, payload = await conn.request("POST", "/v1/tasks", singles[next_index % len(singles)])
                elif n == per_request:
                    status, payload = await conn.request("POST", "/v1/tasks/batch", batch_body)
                else:
                    body = json.dumps({"tasks": batch_items[:n]}).encode()
                    status, payload = await conn.request("POST", "/v1/tasks/batch", body)
                if status != 201:
                    raise RuntimeError(f"enqueue answered {status}: {payload[:200]!r}")
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return total / (time.perf_counter() - started)


async def _wait_completed(conn: Connection, queue: str, expected: int, limit_s: float = 600) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        info = await _call(conn, "GET", f"/v1/queues/{queue}")
        counts = info["counts"]
        if counts["failed"] or counts["cancelled"]:
            raise RuntimeError(f"bench tasks failed: {counts}")
        if counts["completed"] >= expected:
            return
        await asyncio.sleep(0.005)
    raise RuntimeError(f"not every task completed within {limit_s}s")


async def _latency_phase(host: str, port: int, queue: str, args: argparse.Namespace) -> list[float]:
    """Open-loop load: task i is sent at start + i/rate, whatever the answers do."""
    count = int(args.rate * args.seconds)
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(args.concurrency):
        idle.put_nowait(Connection(host, port))
    sent_at: dict[str, float] = {}
    body = json.dumps({"name": args.task, "queue": queue}).encode()
    inflight: set[asyncio.Task] = set()

    async def send() -> None:
        conn = await idle.get()
        try:
            t0 = time.time()
            status, payload = await conn.request("POST", "/v1/tasks", body)
            if status != 201:
                raise RuntimeError(f"enqueue answered {status}")
            sent_at[json.loads(payload)["id"]] = t0
        finally:
            idle.put_nowait(conn)

    start = time.perf_counter()
    for i in range(count):
        delay = start + i / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        job = asyncio.create_task(send())
        inflight.add(job)
        job.add_done_callback(inflight.discard)
    await asyncio.gather(*inflight)
    conn = await idle.get()
    await _wait_completed(conn, queue, count)
    latencies = []
    cursor = None
    while True:
        path = f"/v1/tasks?queue={queue}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = await _call(conn, "GET", path)
        for t in page["tasks"]:
            started = datetime.fromisoformat(t["started_at"].replace("Z", "+00:00")).timestamp()
            latencies.append((started - sent_at[t["id"]]) * 1000.0)
        cursor = page["next_cursor"]
        if not cursor:
            break
    while not idle.empty():
        await idle.get_nowait().close()
    await conn.close()
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (Linux)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def _measure(url: str, pid: int | None, args: argparse.Namespace, storage: str) -> dict:
    host, _, port_text = url.removeprefix("http://").rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    skip = set(filter(None, args.skip.split(",")))
    run_id = secrets.token_hex(3)
    control = Connection(host, port)
    cpu_start = _cpu_s(pid)
    result: dict[str, Any] = {"storage": storage, "tasks": args.tasks, "batch": args.batch,
                              "concurrency": args.concurrency}
    queue = getattr(args, "bench_queue", None) or f"bench-{run_id}"
    if getattr(args, "kind", None):
        result["kind"] = args.kind
        result.update(args.kind_details)
    if not skip >= {"enqueue", "process"}:
        await _call(control, "POST", f"/v1/queues/{queue}/pause")
        if getattr(args, "queue_limits", False):
            await _call(control, "PATCH", f"/v1/queues/{queue}", LIMITS_THAT_NEVER_BIND)
            result["queue_limits"] = LIMITS_THAT_NEVER_BIND
            result["groups"] = args.groups
        result["enqueue_per_s"] = round(await _enqueue_phase(host, port, queue, args))
        if "process" not in skip:
            started = time.perf_counter()
            cpu_resumed = _cpu_s(pid)
            await _call(control, "POST", f"/v1/queues/{queue}/resume")
            if getattr(args, "kind", None) == "remote":
                from tqd.bench_kinds import pull

                await pull(host, port, queue, args.tasks, args, Connection)
            await _wait_completed(control, queue, args.tasks)
            result["process_per_s"] = round(args.tasks / (time.perf_counter() - started))
            cpu_done = _cpu_s(pid)
            if cpu_resumed is not None and cpu_done is not None:
                # the process phase alone (daemon_cpu_s also holds the enqueue phase)
                result["process_cpu_s"] = round(cpu_done - cpu_resumed, 2)
    if "latency" not in skip:
        latencies = await _latency_phase(host, port, f"bench-{run_id}-latency", args)
        result["rate"] = args.rate
        result["latency_ms_p50"] = round(_percentile(latencies, 0.50), 2)
        result["latency_ms_p99"] = round(_percentile(latencies, 0.99), 2)
    result["rss_mb"] = _rss_mb(pid)
    cpu_end = _cpu_s(pid)
    if cpu_start is not None and cpu_end is not None:
        # CPU the daemon used for all phases: steadier than rates on a busy machine
        result["daemon_cpu_s"] = round(cpu_end - cpu_start, 2)
    await control.close()
    return result


# -- the daemon under test ----------------------------------------------------


def _start_daemon(storage: str, config: str | None) -> tuple[subprocess.Popen, str]:
    from tqd.buildinfo import self_command

    cmd = [*self_command(), "serve", "--listen", "127.0.0.1:0", "--storage", storage,
           "--log-level", "warning"]
    if config:
        cmd += ["--config", config]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"the daemon did not start (it printed {line!r})")
    return proc, line.strip().rsplit(" ", 1)[-1]


def _start_ws_clients(url: str, n: int) -> subprocess.Popen:
    from tqd.buildinfo import self_command

    # its own process, as browsers would be (and the same in the frozen executable)
    proc = subprocess.Popen([*self_command(), "bench", "--ws-clients-process", url, str(n)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("the WebSocket clients did not connect")
    return proc


def _stop_ws_clients(proc: subprocess.Popen) -> dict:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return json.loads(out.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tqd bench``."""
    if args.http_target:
        from tqd.bench_kinds import serve_target

        serve_target()
        return 0
    if args.ws_clients_process:
        from tqd.bench_ws import run_clients

        url, n = args.ws_clients_process
        return run_clients(url, int(n))
    if args.lease_scaling:
        from tqd.bench_lease import measure_lease_scaling

        print(json.dumps(measure_lease_scaling(args.storage)), flush=True)
        return 0
    proc = None
    tmp = None
    url = args.url
    storage = args.storage or "external"
    setup = None
    if args.kind:
        from tqd.bench_kinds import prepare
        from tqd.errors import ConfigError

        if url is not None:
            raise ConfigError("bench: --kind starts its own daemon; leave out --url")
        tmp = tempfile.TemporaryDirectory(prefix="tqd-bench-")
        setup = prepare(args, tmp.name)
        args.config, args.task, args.bench_queue = setup.config, setup.task, setup.queue
        args.kind_details = setup.details
        if not args.skip:
            args.skip = "latency"  # the open-loop phase offers --rate; kinds measure throughput
    if url is None:
        if args.storage is None:
            tmp = tmp or tempfile.TemporaryDirectory(prefix="tqd-bench-")
            storage = f"sqlite://{tmp.name}/bench.db"
        proc, url = _start_daemon(storage, args.config)
    ws = None
    try:
        if args.ws_clients:
            ws = _start_ws_clients(url, args.ws_clients)
        try:
            import uvloop

            result = uvloop.run(_measure(url, proc.pid if proc else None, args, storage))
        except ImportError:  # pragma: no cover
            result = asyncio.run(_measure(url, proc.pid if proc else None, args, storage))
        if ws is not None:
            result.update(_stop_ws_clients(ws))
            ws = None
    finally:
        if ws is not None:
            ws.kill()
            ws.wait()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if setup is not None:
            setup.close()
        if tmp is not None:
            tmp.cleanup()
    if storage.startswith("redis"):
        result["storage"] = safe_url(storage)
    print(json.dumps(result), flush=True)
    return 0

