"""Reloading the configuration on SIGHUP: which settings apply at once, and a
real ``tqd serve`` that takes a new file, or refuses a broken one and keeps
the running configuration."""

from __future__ import annotations

import signal
import socket
import textwrap
from pathlib import Path

import msgspec
import pytest

from tests.helpers.daemon import Daemon, wait_until
from tqd.config import load_config
from tqd.reload import changed_settings, keep_running_values, needs_restart


def config_from(text: str, tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(text))
    return load_config(str(path), env={}, check_paths=False)


def test_changed_settings_names_keys_within_sections(tmp_path: Path) -> None:
    old = config_from("", tmp_path)
    new = config_from("""
        listen = "127.0.0.1:9000"
        [worker]
        concurrency = 7
        enabled = false
        [tasks.resize]
        handler = "builtin:echo"
    """, tmp_path)
    assert changed_settings(old, new) == ["listen", "worker.concurrency", "worker.enabled", "tasks"]
    assert changed_settings(old, old) == []


@pytest.mark.parametrize(
    ("changed", "restart"),
    [
        (["tasks", "queues", "defaults", "worker.concurrency", "worker.queues"], []),
        (["listen", "storage", "data_dir", "sqlite.synchronous", "redis.prefix"],
         ["listen", "storage", "data_dir", "sqlite.synchronous", "redis.prefix"]),
        (["worker.enabled", "worker.lease_batch", "roles.supervisor_interval"],
         ["worker.enabled", "roles.supervisor_interval"]),
    ],
)
def test_only_listed_settings_apply_without_a_restart(changed: list[str], restart: list[str]) -> None:
    assert needs_restart(changed) == restart


def test_settings_that_need_a_restart_keep_their_running_values(tmp_path: Path) -> None:
    old = config_from('listen = "127.0.0.1:1000"', tmp_path)
    new = config_from("""
        listen = "127.0.0.1:2000"
        [worker]
        concurrency = 5
        enabled = false
        [tasks.a]
        handler = "builtin:echo"
    """, tmp_path)
    kept = keep_running_values(old, new, needs_restart(changed_settings(old, new)))
    assert kept.listen == "127.0.0.1:1000"
    assert kept.worker.enabled is True
    assert kept.worker.concurrency == 5
    assert set(kept.tasks) == {"a"}
    assert msgspec.structs.replace(kept, listen=new.listen, worker=new.worker) == new


# -- a real daemon --------------------------------------------------------------


def wait_for_log(daemon: Daemon, text: str, timeout: float = 15.0) -> str:
    """The first stderr line that contains ``text``."""
    return wait_until(lambda: next((ln for ln in daemon.stderr_lines if text in ln), None),
                      timeout=timeout, message=f"log line with {text!r}")


def enqueue(daemon: Daemon, name: str, payload: object = None, **fields: object) -> tuple[int, dict]:
    return daemon.call("POST", "/v1/tasks", {"name": name, "payload": payload, **fields})


def outcome(daemon: Daemon, task_id: str) -> dict:
    status, task = daemon.call("GET", f"/v1/tasks/{task_id}?wait=20")
    assert status == 200
    return task


def test_sighup_applies_new_task_definitions_without_dropping_running_tasks(tmp_path: Path) -> None:
    config = tmp_path / "tqd.toml"
    config.write_text('[tasks.slow]\nhandler = "builtin:sleep"\n')
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as daemon:
        status, body = enqueue(daemon, "added")
        assert status == 422 and body["error"]["code"] == "unknown_task"
        status, running = enqueue(daemon, "slow", {"seconds": 2})
        assert status == 201
        wait_until(lambda: daemon.call("GET", f"/v1/tasks/{running['id']}")[1]["state"] == "processing",
                   message="the slow task runs")

        config.write_text(textwrap.dedent("""
            [tasks.slow]
            handler = "builtin:fail"
            [tasks.added]
            handler = "builtin:echo"
            queue = "extra"
            [sqlite]
            synchronous = "normal"
        """))
        daemon.signal(signal.SIGHUP)
        line = wait_for_log(daemon, "reloaded")
        assert "added: added" in line
        restart = wait_for_log(daemon, "next restart")
        assert "sqlite.synchronous" in restart

        status, task = enqueue(daemon, "added", {"x": 1})
        assert status == 201 and task["queue"] == "extra"
        assert outcome(daemon, task["id"])["result"] == {"x": 1}
        # The task that was running kept the handler it started with.
        done = outcome(daemon, running["id"])
        assert (done["state"], done["attempts"], done["error"]) == ("completed", 1, None)
        # New tasks of that name use the new definition.
        _, again = enqueue(daemon, "slow", {"retry": False})
        assert outcome(daemon, again["id"])["state"] == "failed"
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def test_sighup_with_a_broken_config_keeps_the_running_one(tmp_path: Path) -> None:
    config = tmp_path / "tqd.toml"
    config.write_text('[tasks.kept]\nhandler = "builtin:echo"\n')
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as daemon:
        broken = {
            "[tasks.kept\n": "invalid TOML",
            '[tasks.kept]\nhandler = "builtin:echo"\nretries = 3\n': "tasks.kept.retries: unknown key",
            '[tasks.kept]\nhandler = "no_such_module_xyz:run"\n': "cannot import module 'no_such_module_xyz'",
            '[worker]\nconcurrency = 0\n': "worker.concurrency",
        }
        for number, (text, reason) in enumerate(broken.items(), 1):
            config.write_text(text)
            daemon.signal(signal.SIGHUP)
            wait_until(lambda n=number: sum("reload refused" in ln for ln in daemon.stderr_lines) >= n,
                       message=f"refusal #{number}")
            refusal = [ln for ln in daemon.stderr_lines if "reload refused" in ln][-1]
            assert reason in refusal and str(config) in refusal, refusal
            status, task = enqueue(daemon, "kept", "still here")
            assert status == 201
            assert outcome(daemon, task["id"])["result"] == "still here"
        config.unlink()
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: any("no such file" in ln for ln in daemon.stderr_lines), message="missing file")
        assert enqueue(daemon, "kept")[0] == 201
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def test_sighup_changes_queue_limits_and_concurrency(tmp_path: Path) -> None:
    config = tmp_path / "tqd.toml"
    base = 'shutdown_grace = 0.5\n[tasks.nap]\nhandler = "builtin:sleep"\nqueue = "q"\n'
    config.write_text(base + "[queues.q]\nconcurrency = 1\n")
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as daemon:
        status, _ = daemon.call("POST", "/v1/tasks/batch",
                                {"tasks": [{"name": "nap", "payload": {"seconds": 60}}] * 4})
        assert status == 201

        def counts() -> dict[str, int]:
            return daemon.call("GET", "/v1/queues/q")[1]["counts"]

        wait_until(lambda: counts()["processing"] == 1, message="one task of q processing")
        assert counts()["pending"] == 3

        config.write_text(base + "[queues.q]\nconcurrency = 3\n")
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: counts()["processing"] == 3, message="three tasks of q processing")
        assert counts()["pending"] == 1

        config.write_text(base + "[worker]\nqueues = [\"other\"]\n")
        daemon.signal(signal.SIGHUP)
        wait_for_log(daemon, "worker.queues")
        # A task of the newly served queue runs: the pool leased after the reload...
        _, other = enqueue(daemon, "nap", {"seconds": 0}, queue="other")
        assert outcome(daemon, other["id"])["state"] == "completed"
        # ...but no longer from q: the running ones go on, the pending one waits.
        assert counts()["processing"] == 3 and counts()["pending"] == 1
        assert daemon.stop() == 0
    assert "handed back 3 tasks" in daemon.stderr


def test_sighup_reloads_schedules(tmp_path: Path) -> None:
    """A schedule added by a reload fires; a removed one stops; a broken one is
    refused and the running schedules are kept."""
    config = tmp_path / "tqd.toml"
    first = '[schedules.old]\ncron = "@yearly"\ntask = "tqd.noop"\n'
    config.write_text(first)
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as daemon:
        def names() -> list[str]:
            status, body = daemon.call("GET", "/v1/schedules")
            assert status == 200, body
            return [s["name"] for s in body["schedules"]]

        assert names() == ["old"]
        config.write_text('[schedules.tick]\ncron = "* * * * * *"\ntask = "tqd.echo"\n'
                          'payload = "tock"\n')
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: names() == ["tick"], message="the new schedule")

        def fired() -> list[dict]:
            _, page = daemon.call("GET", "/v1/tasks?name=tqd.echo")
            return [t for t in page["tasks"] if (t["idempotency_key"] or "").startswith("cron:tick:")]

        done = wait_until(lambda: [t for t in fired() if t["state"] == "completed"],
                          message="a task of the new schedule")
        assert done[0]["result"] == "tock"
        config.write_text('[schedules.tick]\ncron = "* * * * * *"\ntask = "nope"\n')
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: any("reload refused" in ln for ln in daemon.stderr_lines),
                   message="refusal")
        refusal = [ln for ln in daemon.stderr_lines if "reload refused" in ln][-1]
        assert "schedules.tick.task: unknown task 'nope'" in refusal, refusal
        assert names() == ["tick"]
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def _get_healthz(port: int) -> bytes:
    """The status line a new connection gets for GET /healthz."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(_HEALTHZ % port)
        return conn.makefile("rb").readline()


_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"


def test_sighup_changes_the_connection_limit_for_new_connections(tmp_path: Path) -> None:
    config = tmp_path / "tqd.toml"
    config.write_text("[api]\nmax_connections = 2\n")
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as daemon:
        port = int(daemon.url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            # the two held connections are counted once tqd has taken them
            wait_until(lambda: b" 503 " in _get_healthz(port), message="a third connection refused")
            config.write_text("[api]\nmax_connections = 4\n")
            daemon.signal(signal.SIGHUP)
            wait_for_log(daemon, "api.max_connections")
            assert b" 200 " in _get_healthz(port)
            # the held ones were never cut
            held[0].sendall(_HEALTHZ % port)
            assert b" 200 " in held[0].makefile("rb").readline()
        finally:
            for conn in held:
                conn.close()
        assert daemon.stop() == 0
