"""Fixtures of the executable's tests: build dist/tqd once per session.

The build takes about half a minute on an idle machine, so it runs only with
``--binary`` (CI passes it) or when ``$TQD_BINARY`` names a prebuilt
executable; otherwise the tests that need it are skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import ROOT
from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401

BUILD_SCRIPT = ROOT / "packaging" / "build.sh"
BUILD_DEADLINE = 900.0


@pytest.fixture(scope="session")
def tqd_binary(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-file executable: $TQD_BINARY, or built from this checkout into a temp dir."""
    prebuilt = os.environ.get("TQD_BINARY")
    if prebuilt:
        path = Path(prebuilt).resolve()
        assert path.is_file() and os.access(path, os.X_OK), f"TQD_BINARY={prebuilt} is not an executable"
        return path
    if not request.config.getoption("--binary"):
        pytest.skip("the executable is built and tested only with --binary (CI passes it) "
                    "or TQD_BINARY=PATH")
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.fail("--binary needs PyInstaller: pip install -e '.[build]'")
    out = tmp_path_factory.mktemp("pyinstaller")
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--dist", str(out / "dist"), "--work", str(out / "work")],
        env={**os.environ, "PYTHON": sys.executable}, cwd=ROOT,
        capture_output=True, text=True, timeout=BUILD_DEADLINE,
    )
    assert done.returncode == 0, f"build failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    binary = out / "dist" / "tqd"
    assert binary.is_file()
    # Shown with -s or in the log of a failure; the figure is in the build output too.
    print(f"\nbuilt {binary} in {time.monotonic() - started:.0f}s")
    return binary
