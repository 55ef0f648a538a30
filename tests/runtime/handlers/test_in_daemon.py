"""exec and http tasks through a real daemon (uvloop, the pool, the API), and
what ``tqd config check`` and ``tqd serve`` say about a missing program."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.helpers.daemon import ROOT, Daemon, tqd_env, wait_until
from tests.helpers.procs import read_pids, running
from tqd.cli import main
from tqd.client import Client

SECRET = "daemon-test-secret"
TREE = "echo $$ >> $PIDS/$TQD_TASK_ID; sleep 300 & echo $! >> $PIDS/$TQD_TASK_ID; wait"


class ThreadedTarget:
    """A webhook receiver on its own thread and loop; records what it gets."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.json_response({"received": True})

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> ThreadedTarget:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def target() -> Iterator[ThreadedTarget]:
    with ThreadedTarget() as t:
        yield t


@pytest.fixture(scope="module")
def pids(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pids")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, target: ThreadedTarget, pids: Path) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("handlers")
    config = tmp / "tqd.toml"
    config.write_text(f"""
[tasks.cat]
handler = {{kind = "exec", command = ["/bin/cat"]}}

[tasks.tree]
handler = {{kind = "exec", command = ["/bin/sh", "-c", "{TREE}"], env = {{PIDS = "{pids}"}}, kill_grace = 1.0}}
timeout = 0.5
max_attempts = 1

[tasks.slow]
handler = {{kind = "exec", command = ["/bin/sh", "-c", "{TREE}"], env = {{PIDS = "{pids}"}}}}

[tasks.hook]
handler = {{kind = "http", url = "{target.url}", secret = "{SECRET}"}}
""")
    with Daemon(f"sqlite://{tmp}/tqd.db", config=config) as d:
        yield d


def test_an_exec_task_completes_with_its_output(daemon: Daemon):
    client = Client(daemon.url)
    task = client.enqueue("cat", {"through": ["stdin", "stdout"]})
    done = client.wait(task["id"], timeout=20)
    assert done["state"] == "completed"
    assert done["result"] == {"through": ["stdin", "stdout"]}


def test_a_timeout_kills_the_process_tree(daemon: Daemon, pids: Path):
    client = Client(daemon.url)
    task = client.enqueue("tree")
    done = client.wait(task["id"], timeout=30)
    assert done["state"] == "failed"
    assert done["error"]["kind"] == "timeout"
    assert done["error"]["message"] == "timed out after 0.5s"
    tree = read_pids(pids / task["id"])
    assert len(tree) == 2
    wait_until(lambda: not any(running(p) for p in tree), timeout=10, message="tree gone")


def test_cancel_of_a_running_command_kills_its_tree(daemon: Daemon, pids: Path):
    client = Client(daemon.url)
    task = client.enqueue("slow")
    tree = wait_until(lambda: len(read_pids(pids / task["id"])) == 2 and read_pids(pids / task["id"]),
                      timeout=20, message="command started")
    assert all(running(p) for p in tree)
    assert client.cancel(task["id"])["state"] == "cancelled"
    wait_until(lambda: not any(running(p) for p in tree), timeout=10, message="tree gone")


def test_an_http_task_posts_a_signed_payload(daemon: Daemon, target: ThreadedTarget):
    client = Client(daemon.url)
    task = client.enqueue("hook", {"order": 1})
    done = client.wait(task["id"], timeout=20)
    assert done["state"] == "completed"
    assert done["result"] == {"received": True}
    headers, body = target.received[-1]
    assert body == b'{"order":1}'
    assert headers["Tqd-Task-Id"] == task["id"]
    t, v1 = (part.split("=", 1)[1] for part in headers["Tqd-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)


def _tqd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tqd", *args], capture_output=True, text=True,
                          env=tqd_env(), cwd=ROOT, timeout=60)


def test_config_check_and_serve_report_a_missing_program(tmp_path: Path):
    config = tmp_path / "tqd.toml"
    config.write_text('[tasks.resize]\nhandler = {kind = "exec", command = ["/opt/none/resize", "-q"]}\n')
    expected = (f"tqd: {config}: tasks.resize.handler.command: program '/opt/none/resize' "
                "does not exist")
    out = _tqd("config", "check", str(config))
    assert (out.returncode, out.stderr.strip()) == (2, expected)
    out = _tqd("serve", "--config", str(config), "--listen", "127.0.0.1:0",
               "--storage", f"sqlite://{tmp_path}/tqd.db")
    assert (out.returncode, out.stderr.strip()) == (2, expected)
    assert out.stdout == ""


def test_config_check_reports_bad_handler_settings(tmp_path: Path, capsys):
    config = tmp_path / "tqd.toml"
    for handler, message in (
        ('{kind = "exec", command = []}', "tasks.x.handler.command: expected `array` of length >= 1"),
        ('{kind = "exec", command = ["/bin/true"], env = {TQD_TASK_ID = "x"}}',
         "tasks.x.handler.env: TQD_TASK_ID: TQD_* variables are set by tqd itself"),
        ('{kind = "http", url = "ftp://example.com/"}',
         "tasks.x.handler.url: expected an http:// or https:// URL, got 'ftp://example.com/'"),
        ('{kind = "http", url = "http://u:p@example.com/"}',
         "tasks.x.handler.url: put credentials in headers, not in the URL"),
        ('{kind = "http", url = "http://example.com/", headers = {"X-A" = "a\\nb"}}',
         "tasks.x.handler.headers.X-A: a header value cannot hold a line break"),
        ('{kind = "remote", url = "http://example.com/"}', "tasks.x.handler.url: unknown key"),
        ('{kind = "shell", command = "rm -rf /"}', "tasks.x.handler.kind: invalid value 'shell'"),
    ):
        config.write_text(f"[tasks.x]\nhandler = {handler}\nqueue = \"x\"\n")
        assert main(["config", "check", str(config)]) == 2, handler
        err = capsys.readouterr().err
        assert err.strip().startswith(f"tqd: {config}: {message}"), err


def test_serve_on_a_port_in_use_says_so_in_one_line(daemon: Daemon, tmp_path: Path):
    taken = daemon.url.removeprefix("http://")
    out = _tqd("serve", "--listen", taken, "--storage", f"sqlite://{tmp_path}/tqd.db")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"tqd: listen: cannot listen on {taken}: Address already in use")
    assert "Traceback" not in out.stderr
