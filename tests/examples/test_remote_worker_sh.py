"""examples/remote-worker.sh (POSIX sh + curl) runs remote tasks end to end."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import ROOT, Daemon, tqd_env
from tqd.client import Client

SCRIPT = ROOT / "examples" / "remote-worker.sh"

# The command the worker runs: doubles payload.n; n = 0 fails, n < 0 prints
# something that is not JSON, n = 7 takes longer than its lease.
COMMAND = r"""
n=$(sed -n 's/.*"payload":{"n":\(-\{0,1\}[0-9]*\)}.*/\1/p')
if [ "$n" = 0 ]; then echo "zero is not allowed" >&2; exit 3; fi
if [ "$n" -lt 0 ]; then echo "not json"; exit 0; fi
if [ "$n" = 7 ]; then sleep 2; fi
echo "{\"double\": $((n * 2)), \"task\": \"$TQD_TASK_LOOKS\"}"
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    config = tmp_path / "tqd.toml"
    config.write_text(
        "[roles]\nsupervisor_interval = 0.2\n"
        '[tasks.shell]\nhandler = {kind = "remote"}\nqueue = "shell"\nmax_attempts = 1\n'
    )
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as d:
        yield d


def test_a_shell_worker_runs_tasks_end_to_end(daemon: Daemon):
    client = Client(daemon.url)
    env = tqd_env({"TQD_URL": daemon.url, "WAIT": "2", "HEARTBEAT": "0.3", "VISIBILITY": "1",
                   "TQD_WORKER": "sh-worker-1", "TQD_TASK_LOOKS": "fine"})
    worker = subprocess.Popen(["sh", str(SCRIPT), "shell", "sh", "-c", COMMAND], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        good = [client.enqueue("shell", {"n": n}) for n in (1, 2, 3, 7)]
        zero = client.enqueue("shell", {"n": 0})
        text = client.enqueue("shell", {"n": -1})
        for t in good:
            done = client.wait(t["id"], timeout=30)
            n = t["payload"]["n"]
            assert done["state"] == "completed", done
            assert done["result"] == {"double": 2 * n, "task": "fine"}
            assert done["worker"] == "sh-worker-1"
            # n = 7 ran for 2 s on leases of 1 s: the heartbeats kept it.
            assert done["errors"] == []
        failed = client.wait(zero["id"], timeout=30)
        assert failed["state"] == "failed"
        assert failed["error"]["kind"] == "remote"
        assert failed["error"]["message"] == "exit 3: zero is not allowed"
        bad = client.wait(text["id"], timeout=30)
        assert bad["state"] == "failed"
        assert bad["error"]["message"] == "the command's stdout is not one JSON value"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, err = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    assert worker.returncode == 0, err
    assert err == ""


def test_a_shell_worker_stops_on_a_queue_it_may_not_lease(daemon: Daemon):
    env = tqd_env({"TQD_URL": daemon.url, "WAIT": "1"})
    out = subprocess.run(["sh", str(SCRIPT), "default", "cat"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert "lease refused (404)" in out.stderr
    assert "no remote queue named 'default'" in out.stderr
