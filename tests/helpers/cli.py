"""Run the ``tqd`` command of this checkout as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.daemon import ROOT, tqd_env


def run_tqd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m tqd ARGS`` with no TQD_* variables but those in ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "tqd", *args],
        capture_output=True, text=True, env=tqd_env(env), cwd=cwd or ROOT, timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserts there is exactly one
    and that no traceback was printed)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tqd: "), lines[0]
    return lines[0]
