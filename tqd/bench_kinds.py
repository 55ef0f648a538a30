"""``tqd bench --kind exec|http|remote``: throughput of the handler kinds.

Each kind writes the configuration of the daemon bench starts:

* ``exec``: ``bench.exec`` runs ``--command`` (default ``/bin/true``) with
  ``--worker-concurrency`` tasks at once (default 32);
* ``http``: ``bench.http`` POSTs to a target that answers 200 at once; the
  target is an aiohttp server in its own process (``tqd bench
  --http-target``), so it does not share a loop with the daemon;
* ``remote``: ``bench.remote`` waits in queue ``bench-remote``; during the
  process phase ``--pullers`` pull workers in the bench process lease
  ``--lease`` tasks per request and complete them with one batch settle per
  lease, over the same minimal HTTP client bench uses for enqueues.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqd.errors import ConfigError

KINDS = ("exec", "http", "remote")
REMOTE_QUEUE = "bench-remote"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=KINDS,
                   help="measure a handler kind (writes the daemon's config; see tqd/bench_kinds.py)")
    p.add_argument("--command", dest="exec_command", default="/bin/true",
                   help="--kind exec: the command to run")
    p.add_argument("--worker-concurrency", type=int, default=32,
                   help="--kind exec/http: tasks running at once in the daemon")
    p.add_argument("--pullers", type=int, default=4, help="--kind remote: pull workers")
    p.add_argument("--lease", type=int, default=100, help="--kind remote: tasks per lease")
    # What --kind http starts in a process of its own: the target it POSTs to.
    p.add_argument("--http-target", action="store_true", help=argparse.SUPPRESS)


@dataclass
class Setup:
    """What a kind prepared: the daemon's config, the task, and what to stop after."""

    config: str
    task: str
    queue: str | None = None
    target: subprocess.Popen | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.target is not None and self.target.poll() is None:
            self.target.send_signal(signal.SIGTERM)
            try:
                self.target.wait(10)
            except subprocess.TimeoutExpired:
                self.target.kill()


def prepare(args: argparse.Namespace, folder: str) -> Setup:
    """Write the config for ``args.kind`` into ``folder`` (and start a target)."""
    if args.config:
        raise ConfigError("bench: --kind writes its own config; leave out --config")
    path = Path(folder) / "bench.toml"
    concurrency = args.worker_concurrency
    if args.kind == "exec":
        argv = shlex.split(args.exec_command)
        path.write_text(
            f"[worker]\nconcurrency = {concurrency}\n"
            f'[tasks."bench.exec"]\nhandler = {{kind = "exec", command = {json.dumps(argv)}}}\n'
        )
        return Setup(str(path), "bench.exec", details={"command": argv,
                                                       "worker_concurrency": concurrency})
    if args.kind == "http":
        target, url = _start_target()
        path.write_text(
            f"[worker]\nconcurrency = {concurrency}\n"
            f"[http]\nconnections_per_host = {concurrency}\n"
            f'[tasks."bench.http"]\nhandler = {{kind = "http", url = "{url}"}}\n'
        )
        return Setup(str(path), "bench.http", target=target,
                     details={"worker_concurrency": concurrency})
    path.write_text(
        f'[tasks."bench.remote"]\nhandler = {{kind = "remote"}}\nqueue = "{REMOTE_QUEUE}"\n'
    )
    return Setup(str(path), "bench.remote", queue=REMOTE_QUEUE,
                 details={"pullers": args.pullers, "lease": args.lease})


def _start_target() -> tuple[subprocess.Popen, str]:
    from tqd.buildinfo import self_command

    # Through tqd's own command line, so it works from the frozen executable too.
    proc = subprocess.Popen([*self_command(), "bench", "--http-target"], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the http target did not start (it printed {line!r})")
    return proc, line.strip()


async def pull(host: str, port: int, queue: str, expected: int, args: argparse.Namespace,
               connection: Any) -> None:
    """Lease and complete ``expected`` tasks of ``queue`` with ``args.pullers`` workers."""
    import orjson

    done = 0

    async def puller() -> None:
        nonlocal done
        conn = connection(host, port)
        lease_body = orjson.dumps({"max": args.lease, "wait": 1})
        try:
            while done < expected:
                status, raw = await conn.request("POST", f"/v1/queues/{queue}/lease", lease_body)
                if status != 200:
                    raise RuntimeError(f"lease answered {status}: {raw[:200]!r}")
                tasks = orjson.loads(raw)["tasks"]
                if not tasks:
                    continue
                outcomes = [{"id": t["id"], "token": t["lease"]["token"], "outcome": "complete"}
                            for t in tasks]
                status, raw = await conn.request("POST", "/v1/tasks/settle",
                                                 orjson.dumps({"outcomes": outcomes}))
                if status != 200:
                    raise RuntimeError(f"settle answered {status}: {raw[:200]!r}")
                done += sum(1 for r in orjson.loads(raw)["results"] if r["ok"])
        finally:
            await conn.close()

    await asyncio.gather(*(puller() for _ in range(args.pullers)))


# -- the http target ------------------------------------------------------------


def serve_target() -> None:
    """Answer every POST at once with a small JSON body; print the URL; stop on SIGTERM."""
    from aiohttp import web

    body = b'{"ok":true}'

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"http://{host}:{port}/hook", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await runner.cleanup()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
