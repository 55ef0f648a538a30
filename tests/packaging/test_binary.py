"""The one-file executable itself: built once per session (see conftest.py),
run as a real process on SQLite and on a real Redis, driven with curl.

What it must show: the executable needs nothing from this checkout or from a
Python installation; it runs builtin, python and (when this tree has the
kind) exec handlers; it serves every route the source tree serves, with the
same bundled files; it reports to systemd, reloads on SIGHUP through the
bootloader and exits 0 on SIGTERM; it holds under the unit's
MemoryDenyWriteExecute and system call filter.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest

from tests.helpers.daemon import ROOT, Daemon, wait_until
from tests.helpers.notify import NotifySocket, run_notify_sequence
from tests.helpers.redis_server import RedisServer
from tqd import __version__
from tqd.buildinfo import git_commit
from tqd.config import load_config
from tqd.errors import ConfigError

from .routes import source_routes

MAX_SIZE_MB = 40
UNIT = ROOT / "packaging" / "tqd.service"

# Imports standard modules tqd itself never uses: the executable bundles the
# whole standard library for handlers.
HANDLERS = '''
import csv
import smtplib
import sqlite3
import statistics
import sys
import xml.etree.ElementTree
import zoneinfo


def describe(payload, ctx):
    return {"payload": payload, "frozen": bool(getattr(sys, "frozen", False)),
            "task": ctx.name, "mean": statistics.mean(payload)}
'''


def exec_supported(tmp_path: Path) -> bool:
    """Whether this tree's config knows the exec handler kind (issue 5)."""
    probe = tmp_path / "probe.toml"
    probe.write_text('[tasks.x]\nhandler = {kind = "exec", command = ["/bin/cat"]}\n')
    try:
        load_config(str(probe), env={}, check_paths=False)
    except ConfigError:
        return False
    return True


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """A config with a python handler from python_path and, where it exists, an exec one."""
    (tmp_path / "smokehandlers.py").write_text(HANDLERS)
    text = textwrap.dedent(f"""
        python_path = ["{tmp_path}"]
        shutdown_grace = 5.0
        [tasks.py]
        handler = "smokehandlers:describe"
    """)
    if exec_supported(tmp_path):
        text += '[tasks.cat]\nhandler = {kind = "exec", command = ["/bin/cat"]}\n'
    path = tmp_path / "tqd.toml"
    path.write_text(text + textwrap.dedent(extra))
    return path


def binary_daemon(binary: Path, storage: str, config: Path, *, wrap: list[str] | None = None,
                  env: dict[str, str] | None = None) -> Daemon:
    """A Daemon running the executable (no PYTHONPATH: nothing comes from the checkout)."""
    return Daemon(storage, config=config, command=[*(wrap or []), str(binary)],
                  env={"PYTHONPATH": "", **(env or {})})


def curl(url: str, *args: str) -> dict:
    """One request with curl; the decoded JSON body (fails on an HTTP error)."""
    done = subprocess.run(["curl", "-sS", "--fail-with-body", "--max-time", "60", *args, url],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"curl {url} failed ({done.returncode}): {done.stdout} {done.stderr}"
    return json.loads(done.stdout)


def run_with_curl(daemon: Daemon, name: str, payload: object) -> dict:
    """Enqueue with curl, then wait for the outcome with curl."""
    task = curl(daemon.url + "/v1/tasks", "-X", "POST", "-H", "Content-Type: application/json",
                "-d", json.dumps({"name": name, "payload": payload}))
    assert task["state"] in ("pending", "processing")
    return curl(f"{daemon.url}/v1/tasks/{task['id']}?wait=30")


def smoke(daemon: Daemon, tmp_path: Path) -> int:
    """Run every handler kind of this tree through the daemon; return tasks completed."""
    echoed = run_with_curl(daemon, "tqd.echo", {"hello": "world"})
    assert (echoed["state"], echoed["result"]) == ("completed", {"hello": "world"})
    described = run_with_curl(daemon, "py", [1, 2])
    assert described["state"] == "completed", described
    assert described["result"] == {"payload": [1, 2], "frozen": True, "task": "py", "mean": 1.5}
    completed = 2
    if exec_supported(tmp_path):
        catted = run_with_curl(daemon, "cat", {"via": "exec"})
        assert (catted["state"], catted["result"]) == ("completed", {"via": "exec"}), catted
        completed += 1
    for path in ("/healthz", "/readyz"):
        assert daemon.call("GET", path)[0] == 200
    return completed


def test_exec_handler_is_checked_when_the_tree_has_it(tmp_path: Path) -> None:
    if not exec_supported(tmp_path):
        pytest.skip("this tree has no exec handler kind yet (issue 5): the smoke tests run "
                    "builtin and python handlers only, and include exec once it exists")
    config = load_config(str(write_config(tmp_path)), env={}, check_paths=False)
    assert "cat" in config.tasks and config.tasks["cat"].handler is not None


# -- the file -------------------------------------------------------------------


def test_executable_is_within_the_size_budget(tqd_binary: Path) -> None:
    size_mb = tqd_binary.stat().st_size / 2**20
    assert size_mb <= MAX_SIZE_MB, f"{size_mb:.1f} MB"


def test_version_names_version_commit_and_python(tqd_binary: Path, tmp_path: Path) -> None:
    # No PATH, no PYTHON* variables, another working directory: nothing from outside.
    done = subprocess.run(["env", "-i", str(tqd_binary), "version", "--json", "--verbose"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["version"] == __version__
    assert info["python"] == platform.python_version()
    assert info["frozen"] is True
    expected = os.environ.get("TQD_BUILD_COMMIT") or git_commit(str(ROOT)) or "unknown"
    if os.environ.get("TQD_BINARY"):  # prebuilt: from some commit, not necessarily this one
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", info["commit"]), info["commit"]
    else:
        assert info["commit"] == expected
    needed = ["aiohttp", "uvloop", "orjson", "msgspec", "redis", "cronsim", "tzdata"]
    sources = "".join(p.read_text() for p in (ROOT / "tqd").rglob("*.py"))
    if re.search(r"^\s*(import|from) prometheus_client", sources, re.M):
        needed.append("prometheus_client")
    missing = [lib for lib in needed if info["libraries"].get(lib, "missing") == "missing"]
    assert not missing, f"not in the executable: {missing}"

    line = subprocess.run([str(tqd_binary), "version"], capture_output=True, text=True, timeout=60)
    assert line.stdout.startswith(f"tqd {__version__} (commit {info['commit']}, Python ")


def test_time_zones_come_with_the_executable(tqd_binary: Path, tmp_path: Path) -> None:
    """A cron schedule in a time zone works on a host without zone files: an
    empty PYTHONTZPATH hides the system's, the bundled tzdata answers."""
    cfg = tmp_path / "tqd.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[schedules.nightly]\ncron = "30 2 * * *"\n'
                   'timezone = "Pacific/Chatham"\ntask = "tqd.noop"\n')
    done = subprocess.run(["env", "-i", "PYTHONTZPATH=", str(tqd_binary), "config", "check",
                           str(cfg)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 schedules" in done.stdout


def test_missing_config_exits_2_with_one_line(tqd_binary: Path, tmp_path: Path) -> None:
    """What the unit relies on (RestartPreventExitStatus=2): the bootloader
    passes tqd's status through, and the journal gets one line, no traceback."""
    missing = tmp_path / "etc" / "tqd.toml"
    done = subprocess.run([str(tqd_binary), "serve", "--config", str(missing)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"tqd: {missing}: no such file\n"


# -- serving --------------------------------------------------------------------


def test_serves_on_sqlite_and_reports_to_systemd(tqd_binary: Path, tmp_path: Path) -> None:
    notify = NotifySocket()
    # $$ of the shell becomes the bootloader's pid after exec: the main pid
    # systemd would name in WATCHDOG_PID, while tqd runs in its child.
    wrap = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"']
    daemon = binary_daemon(tqd_binary, f"sqlite://{tmp_path}/data/tqd.db", write_config(tmp_path),
                           wrap=wrap, env=notify.env(watchdog_usec=400_000))
    try:
        with daemon:
            completed = smoke(daemon, tmp_path)
            run_notify_sequence(daemon, notify, completed_before=completed)
    finally:
        notify.close()
    assert "Traceback" not in daemon.stderr
    assert "stopped" in daemon.stderr
    assert (tmp_path / "data" / "tqd.db").is_file()


def test_serves_on_redis(tqd_binary: Path, tmp_path: Path, redis_server: RedisServer,
                         redis_prefix: str) -> None:
    config = write_config(tmp_path, f'[redis]\nprefix = "{redis_prefix}"\n')
    with binary_daemon(tqd_binary, redis_server.url, config) as daemon:
        smoke(daemon, tmp_path)
        assert daemon.call("GET", "/readyz")[1]["storage"] == "redis"
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def test_sighup_reloads_through_the_bootloader(tqd_binary: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with binary_daemon(tqd_binary, f"sqlite://{tmp_path}/tqd.db", config) as daemon:
        assert daemon.call("POST", "/v1/tasks", {"name": "later"})[0] == 422
        config.write_text(config.read_text() + '[tasks.later]\nhandler = "builtin:echo"\n')
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: any("reloaded" in ln for ln in daemon.stderr_lines), message="reload")
        assert run_with_curl(daemon, "later", 5)["result"] == 5
        assert daemon.stop() == 0


# -- the same routes and files as the source tree -------------------------------


def fetch(url: str) -> tuple[int, str, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get_content_type(), err.read()


#: Same-origin files a page, script or style sheet refers to (src=, href=,
#: import("./x.js"), url(x.css), "assets/x.js").
_REFERENCE = re.compile(
    r"""(?:src|href)=["']([^"'#?]+)["']|["'(]((?:\.{0,2}/)?[A-Za-z0-9_./-]+\.(?:js|mjs|css|svg|png|ico|woff2?|json|map))["')]"""
)
_WEB_TYPES = ("text/html", "text/css", "application/javascript", "text/javascript")


def referenced_paths(page: str, body: bytes) -> set[str]:
    """URL paths on the same origin that ``body`` (served at ``page``) refers to."""
    found = set()
    for m in _REFERENCE.finditer(body.decode("utf-8", "replace")):
        ref = m.group(1) or m.group(2)
        if ref.startswith(("http:", "https:", "//", "data:", "mailto:", "javascript:")):
            continue
        found.add(urllib.parse.urljoin("http://x" + page, ref).removeprefix("http://x"))
    return found


def test_serves_every_route_the_source_tree_serves(tqd_binary: Path, tmp_path: Path) -> None:
    """Every GET route without parameters, every file of a static route, and
    every file the served pages, scripts and style sheets refer to (followed
    from page to page): same status and type, same bytes for web files."""
    plain, files = source_routes(tmp_path / "probe")
    assert "/healthz" in plain
    source_dir, binary_dir = tmp_path / "source", tmp_path / "binary"
    source_dir.mkdir()
    binary_dir.mkdir()
    source = Daemon(f"sqlite://{source_dir}/tqd.db", config=write_config(source_dir))
    binary = binary_daemon(tqd_binary, f"sqlite://{binary_dir}/tqd.db", write_config(binary_dir))
    with source, binary:
        differences, seen, web_files = [], set(), 0
        todo = [*plain, *files]
        while todo and len(seen) < 500:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            s_status, s_type, s_body = fetch(source.url + path)
            b_status, b_type, b_body = fetch(binary.url + path)
            same_body = path in files or s_type in _WEB_TYPES
            if (s_status, s_type) != (b_status, b_type) or (same_body and s_body != b_body):
                differences.append(f"{path}: source {s_status} {s_type} {len(s_body)}B, "
                                   f"binary {b_status} {b_type} {len(b_body)}B")
            if s_status == 200 and s_type in _WEB_TYPES:
                web_files += 1
                todo += sorted(referenced_paths(path, s_body) - seen)
        assert not differences, "\n".join(differences)
        print(f"\n{len(seen)} paths compared ({len(plain)} routes, {len(files)} static files, "
              f"{web_files} web files served alike)")


@pytest.mark.parametrize(("path", "who"), [("/", "the dashboard (issue 7)"), ("/docs", "the API docs (issue 4)")])
def test_serves_dashboard_and_docs_when_the_tree_has_them(
    tqd_binary: Path, tmp_path: Path, path: str, who: str
) -> None:
    plain, _ = source_routes(tmp_path / "probe")
    if path not in plain:
        pytest.skip(f"the source tree serves no {path} yet ({who} not merged); "
                    "test_serves_every_route_the_source_tree_serves checks it once it does")
    with binary_daemon(tqd_binary, f"sqlite://{tmp_path}/tqd.db", write_config(tmp_path)) as daemon:
        status, content_type, body = fetch(daemon.url + path)
        assert (status, content_type) == (200, "text/html"), (status, content_type)
        assert b"<html" in body.lower()


# -- the unit's sandbox ---------------------------------------------------------

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
MDWE_WRAPPER = textwrap.dedent(f"""
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_MDWE): " + os.strerror(ctypes.get_errno()))
    os.execv(sys.argv[1], sys.argv[1:])
""")


def kernel_has_mdwe() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_MDWE + 1, 0, 0, 0, 0) >= 0  # PR_GET_MDWE, Linux >= 6.3


def test_runs_with_memory_deny_write_execute(tqd_binary: Path, tmp_path: Path) -> None:
    """The kernel's PR_SET_MDWE refuses what systemd's MemoryDenyWriteExecute=yes
    refuses (memory both writable and executable, or made executable later); it
    is inherited across fork and exec, so it covers the bootloader and tqd."""
    if not kernel_has_mdwe():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3): MemoryDenyWriteExecute unchecked")
    wrap = [sys.executable, "-c", MDWE_WRAPPER]
    # The wrapper really forbids writable+executable memory...
    probe = subprocess.run(
        [*wrap, sys.executable, "-c",
         "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"],
        capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr
    # ...and tqd runs under it: start, every handler kind, reload, stop.
    with binary_daemon(tqd_binary, f"sqlite://{tmp_path}/tqd.db", write_config(tmp_path),
                       wrap=wrap) as daemon:
        smoke(daemon, tmp_path)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: any("reloaded" in ln for ln in daemon.stderr_lines), message="reload")
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def unit_setting(name: str) -> list[str]:
    return [ln.split("=", 1)[1].strip() for ln in UNIT.read_text().splitlines()
            if ln.startswith(name + "=")]


def syscall_group(group: str) -> set[str]:
    """Every system call of a systemd group, nested groups expanded."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    names: set[str] = set()
    for line in out[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        names |= syscall_group(word) if word.startswith("@") else {word}
    return names


def test_system_calls_stay_within_the_units_filter(tqd_binary: Path, tmp_path: Path) -> None:
    """Every system call tqd makes while it starts, runs tasks, reloads and
    stops is allowed by the unit's SystemCallFilter (strace records them)."""
    if not (shutil.which("strace") and shutil.which("systemd-analyze")):
        pytest.skip("needs strace and systemd-analyze (apt-get install strace systemd)")
    allowed: set[str] = set()
    denied: set[str] = set()
    for value in unit_setting("SystemCallFilter"):
        for group in value.lstrip("~").split():
            (denied if value.startswith("~") else allowed).update(syscall_group(group))
    trace = tmp_path / "strace.txt"
    wrap = ["strace", "-f", "-qq", "-o", str(trace)]
    daemon = binary_daemon(tqd_binary, f"sqlite://{tmp_path}/tqd.db", write_config(tmp_path), wrap=wrap)
    with daemon:
        # signals go to the bootloader (strace's child), as systemd sends them
        bootloader = int(Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children").read_text().split()[0])
        smoke(daemon, tmp_path)
        os.kill(bootloader, signal.SIGHUP)
        wait_until(lambda: any("reloaded" in ln for ln in daemon.stderr_lines), message="reload")
        os.kill(bootloader, signal.SIGTERM)
        assert daemon.wait(60) == 0
    used = set(re.findall(r"^\d+\s+([a-z0-9_]+)\(", trace.read_text(), re.M))
    assert {"execve", "epoll_wait", "accept4"} & used  # the trace holds real calls
    # fchown: SQLite calls it only when running as root, which the unit never does
    # (DynamicUser); refused with EPERM (SystemCallErrorNumber), SQLite goes on.
    outside = sorted((used - allowed) | (used & denied - {"fchown"}))
    assert not outside, f"system calls the unit refuses: {outside}"
    assert unit_setting("SystemCallErrorNumber") == ["EPERM"]
