"""The client commands of `tqd` against a real `tqd serve` subprocess.

The exit statuses (0 ok, 1 the task failed with --wait, 2 usage error, 3
server unreachable, 4 the wait ran out) are checked on real `tqd` processes; the commands'
output is checked by calling the CLI's ``main`` in this process (the same
code and HTTP requests, without an interpreter start per command).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import one_line_error, run_tqd
from tests.helpers.daemon import Daemon
from tqd.cli import main


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    path = tmp_path_factory.mktemp("cli") / "tqd.db"
    with Daemon(f"sqlite://{path}") as d:
        yield d


class Cli:
    """Runs ``tqd --url URL ...`` in this process; returns (status, stdout, stderr)."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main(["--url", self.url, *args])
        out, err = self.capsys.readouterr()
        return status, out, err

    def json(self, *args: str) -> dict:
        status, out, err = self(*args)
        assert status == 0, err
        return json.loads(out)


@pytest.fixture
def cli(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(daemon.url, capsys)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the commands ------------------------------------------------------------------


def test_enqueue_and_get(cli: Cli) -> None:
    task = cli.json("enqueue", "tqd.echo", '{"to": "ada"}', "--queue", "cli-a", "--priority", "7",
                    "--max-attempts", "4", "--idempotency-key", "cli-k1")
    assert (task["name"], task["queue"], task["priority"], task["max_attempts"]) == ("tqd.echo", "cli-a", 7, 4)
    assert task["payload"] == {"to": "ada"} and task["idempotency_key"] == "cli-k1"
    done = cli.json("get", task["id"], "--wait", "10")
    assert done["state"] == "completed" and done["result"] == {"to": "ada"}


def test_enqueue_with_wait_prints_the_outcome(cli: Cli) -> None:
    done = cli.json("enqueue", "tqd.echo", "[1, 2]", "--queue", "cli-b", "--wait")
    assert done["state"] == "completed" and done["result"] == [1, 2]


def test_enqueue_with_a_delay(cli: Cli) -> None:
    task = cli.json("enqueue", "tqd.noop", "--queue", "cli-c", "--delay", "3600")
    assert task["state"] == "scheduled" and task["run_at"] is not None


def test_ls_filters(cli: Cli) -> None:
    later = cli.json("enqueue", "tqd.noop", "--queue", "cli-ls", "--delay", "3600")
    echo = cli.json("enqueue", "tqd.echo", "1", "--queue", "cli-ls", "--delay", "3600")
    status, out, _ = cli("ls", "--queue", "cli-ls")
    assert status == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "NAME", "QUEUE", "STATE", "ATTEMPTS", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == [echo["id"], later["id"]]  # newest first
    assert all(line.split()[3] == "scheduled" for line in lines[1:])
    page = cli.json("ls", "--queue", "cli-ls", "--name", "tqd.noop", "--json")
    assert [t["id"] for t in page["tasks"]] == [later["id"]]
    page = cli.json("ls", "--queue", "cli-ls", "--state", "pending", "--json")
    assert page["tasks"] == []


def test_cancel_and_retry(cli: Cli) -> None:
    task = cli.json("enqueue", "tqd.echo", '"again"', "--queue", "cli-d", "--delay", "3600")
    cancelled = cli.json("cancel", task["id"])
    assert cancelled["state"] == "cancelled"
    retried = cli.json("retry", task["id"])
    assert retried["state"] == "pending"
    assert cli.json("get", task["id"], "--wait", "10")["state"] == "completed"


def test_queues_pause_resume(cli: Cli) -> None:
    paused = cli.json("pause", "cli-e")
    assert paused["name"] == "cli-e" and paused["paused"] is True
    task = cli.json("enqueue", "tqd.noop", "--queue", "cli-e")
    status, out, _ = cli("queues")
    assert status == 0
    header, *rows = out.strip().splitlines()
    assert header.split()[:3] == ["QUEUE", "PAUSED", "PENDING"]
    row = next(r.split() for r in rows if r.split()[0] == "cli-e")
    assert row[1:3] == ["yes", "1"]
    queues = cli.json("queues", "--json")
    assert any(q["name"] == "cli-e" and q["paused"] for q in queues)
    resumed = cli.json("resume", "cli-e")
    assert resumed["paused"] is False
    assert cli.json("get", task["id"], "--wait", "10")["state"] == "completed"


def test_tqd_url_names_the_server(cli: Cli, daemon: Daemon, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TQD_URL", daemon.url)
    capsys.readouterr()
    assert main(["queues", "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


def test_client_errors_are_one_line(cli: Cli) -> None:
    status, out, err = cli("get", "00000000000000000000")
    assert status == 2 and out == ""
    assert err.strip().startswith("tqd: no task with id") and "404" in err
    done = cli.json("enqueue", "tqd.noop", "--queue", "cli-f", "--wait")
    status, _, err = cli("cancel", done["id"])
    assert status == 2 and "completed" in err and "409" in err and len(err.strip().splitlines()) == 1
    status, _, err = cli("enqueue", "tqd.noop", "--priority", "500")
    assert status == 2 and "priority" in err and len(err.strip().splitlines()) == 1


# -- exit statuses of real processes -----------------------------------------------


def test_exit_0_when_the_waited_task_completes(daemon: Daemon) -> None:
    proc = run_tqd("--url", daemon.url, "enqueue", "tqd.echo", '{"n": 1}', "--wait", "30")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"] == {"n": 1}
    assert proc.stderr == ""


def test_exit_1_when_the_waited_task_fails(daemon: Daemon) -> None:
    proc = run_tqd("--url", daemon.url, "enqueue", "tqd.fail",
                   '{"retry": false, "message": "on purpose"}', "--wait", "30")
    assert proc.returncode == 1
    task = json.loads(proc.stdout)
    assert task["state"] == "failed" and task["error"]["message"] == "on purpose"
    assert "Traceback" not in proc.stderr


def test_exit_2_for_a_payload_that_is_not_json(daemon: Daemon) -> None:
    proc = run_tqd("--url", daemon.url, "enqueue", "tqd.echo", "{not json")
    assert proc.returncode == 2
    assert "payload is not valid JSON" in one_line_error(proc)
    assert proc.stdout == ""


def test_exit_2_for_an_unknown_task(daemon: Daemon) -> None:
    proc = run_tqd("--url", daemon.url, "enqueue", "no.such.task")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "no.such.task" in line and "tqd.echo" in line and "422" in line


def test_exit_3_when_the_server_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    proc = run_tqd("--url", url, "queues")
    assert proc.returncode == 3
    line = one_line_error(proc)
    assert "cannot reach tqd" in line and url in line
    proc = run_tqd("get", "00000000000000000000", env={"TQD_URL": url})
    assert proc.returncode == 3 and url in one_line_error(proc)


def test_exit_4_when_the_wait_runs_out_first(daemon: Daemon) -> None:
    proc = run_tqd("--url", daemon.url, "enqueue", "tqd.sleep", '{"seconds": 30}', "--wait", "0.3")
    assert proc.returncode == 4
    assert json.loads(proc.stdout)["state"] in ("pending", "processing")
    assert "still" in one_line_error(proc)
    task_id = json.loads(proc.stdout)["id"]
    run_tqd("--url", daemon.url, "cancel", task_id)
