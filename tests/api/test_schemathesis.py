"""The OpenAPI document is the contract: Schemathesis checks the live app against it.

A real ``tqd serve`` (SQLite, and Redis) answers generated requests for every
operation, valid and invalid ones (``--mode all``), in every phase (coverage,
fuzzing, and stateful sequences that follow the document's links from an
enqueue to get, cancel, retry and delete). The run fails on any 5xx, any
response whose status, content type, headers or body the document does not
describe, any request the document forbids that the app accepts, and the
other protocol checks Schemathesis has. Two checks are left out because they
test the opposite promise (every request the schema allows is accepted):
``positive_data_acceptance`` (the schema cannot say everything the API
checks: a WebSocket needs its upgrade headers, a cursor must be one the API
issued, JSON Schema counts 3.0 as an integer) and
``allow_header_conformance`` (aiohttp's 405 lists the methods of every route
that matches the path, such as ``/v1/tasks/{id}`` for ``/v1/tasks/batch``).

Bounded: ``EXAMPLES`` cases per operation and phase, a fixed seed; about
10-30 s per backend on a busy two-core machine. Set TQD_SCHEMATHESIS_EXAMPLES
to run longer.

Auth is on: tqd runs with an admin token, which every request carries, and
the document declares the bearer scheme, so Schemathesis's ``ignored_auth``
check also sends requests without it and expects 401. ``api.max_wait`` is
lowered below the request timeout, so a generated ``?wait=`` on a task that
never finishes is answered, not timed out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.daemon import Daemon
from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401
from tqd.tokens import hash_token

EXAMPLES = int(os.environ.get("TQD_SCHEMATHESIS_EXAMPLES", "25"))
EXCLUDED = "positive_data_acceptance,allow_header_conformance"


TOKEN = "tqd_schemathesis-token-0123456789abcdefghij"
CONFIG = f"""
[api]
max_wait = 10.0

[[tokens]]
name = "schemathesis"
hash = "{hash_token(TOKEN)}"
scope = "admin"
"""


def _document(url: str, tmp_path) -> Path:
    """The OpenAPI document, fetched with the token (it names this tqd's tasks,
    so it is data a token guards) and saved for Schemathesis."""
    req = urllib.request.Request(f"{url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        path = tmp_path / "openapi.json"
        path.write_bytes(resp.read())
    return path


def run_schemathesis(url: str, tmp_path, seed: int) -> None:
    cmd = [
        sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; "
        "sys.argv[0] = 'st'; sys.exit(schemathesis())",
        "run", str(_document(url, tmp_path)), "--url", url, "--checks", "all", "--exclude-checks", EXCLUDED,
        "--mode", "all", "--max-examples", str(EXAMPLES), "--seed", str(seed),
        "--generation-database", "none", "--workers", "1", "--no-color",
        "--request-timeout", "30",
    ]
    # The token by the document's security scheme (so Schemathesis knows it is
    # the credential, and checks that requests without it are refused).
    (tmp_path / "schemathesis.toml").write_text(f'[auth.openapi.bearer]\nbearer = "{TOKEN}"\n')
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    report = done.stdout[-12000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    # every operation of the document was tested
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", done.stdout)
    tested = re.search(r"Tested:\s+(\d+)", done.stdout)
    assert selected and tested, report
    assert int(selected[1]) == int(selected[2]) == int(tested[1]) >= 21, report


def test_the_live_app_on_sqlite_keeps_its_contract(tmp_path):
    # A schedule (so its trigger enqueues) and a unique task name.
    config = tmp_path / "tqd.toml"
    config.write_text('[schedules.nightly]\ncron = "@daily"\ntask = "tqd.noop"\n'
                      '[tasks.once]\nhandler = "builtin:noop"\nunique_for = 60\n' + CONFIG)
    with Daemon(f"sqlite://{tmp_path}/tqd.db", config=config) as tqd:
        run_schemathesis(tqd.url, tmp_path, seed=1)


@pytest.mark.usefixtures("redis_server")
def test_the_live_app_on_redis_keeps_its_contract(tmp_path, redis_server, redis_prefix):  # noqa: F811
    config = tmp_path / "tqd.toml"
    config.write_text(f'[redis]\nprefix = "{redis_prefix}"\n' + CONFIG)
    with Daemon(redis_server.url, config=config) as tqd:
        run_schemathesis(tqd.url, tmp_path, seed=2)
