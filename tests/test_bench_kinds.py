"""``tqd bench --kind``: each mode runs end to end on a small load (the
figures themselves are benchmarks, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.daemon import ROOT, tqd_env


@pytest.mark.parametrize("kind", ["exec", "http", "remote"])
def test_a_bench_mode_runs_and_reports(kind: str):
    out = subprocess.run(
        [sys.executable, "-m", "tqd", "bench", "--kind", kind, "--tasks", "60", "--concurrency", "4",
         "--lease", "25", "--pullers", "2"],
        capture_output=True, text=True, env=tqd_env(), cwd=ROOT, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["kind"] == kind
    assert result["tasks"] == 60
    assert result["process_per_s"] > 0
    assert "latency_ms_p50" not in result


def test_a_bench_mode_refuses_a_config_of_its_own():
    out = subprocess.run(
        [sys.executable, "-m", "tqd", "bench", "--kind", "exec", "--config", "x.toml"],
        capture_output=True, text=True, env=tqd_env(), cwd=ROOT, timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "tqd: bench: --kind writes its own config; leave out --config"
