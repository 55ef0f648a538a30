"""``pip install .`` ships the prebuilt dashboard inside the package.

The README's first command is a regular (not editable) install; the wheel it
builds must carry web_assets/dist, or an installed tqd would serve no
dashboard. Builds a real wheel with pip, as a user install would.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers.daemon import ROOT


def test_the_wheel_carries_the_dashboard_bundle(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    [wheel] = tmp_path.glob("tqd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {n.removeprefix("tqd/_bundle/") for n in names if n.startswith("tqd/_bundle/")}
    built = {str(p.relative_to(ROOT)) for p in (ROOT / "web_assets" / "dist").rglob("*") if p.is_file()}
    assert built, "web_assets/dist is empty: build the dashboard first"
    assert bundled == built
