"""What this tqd is: version, the git commit it was built from, the Python it runs on.

The executable carries ``tqd_build.json``, written by packaging/tqd.spec at
build time (the commit cannot be asked of git on a host that has no
checkout). From a source checkout the commit comes from ``git rev-parse``.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import dataclass

from tqd import __version__
from tqd.assets import SOURCE_ROOT, asset_file, is_frozen

#: The file the build writes at the bundle root (see packaging/tqd.spec).
BUILD_INFO_FILE = "tqd_build.json"

#: Libraries whose versions ``tqd version --verbose`` shows (import name, distribution).
DEPENDENCIES = (
    ("aiohttp", "aiohttp"),
    ("uvloop", "uvloop"),
    ("orjson", "orjson"),
    ("msgspec", "msgspec"),
    ("redis", "redis"),
    ("prometheus_client", "prometheus-client"),
    ("cronsim", "cronsim"),
    ("tzdata", "tzdata"),
)


@dataclass(frozen=True)
class BuildInfo:
    """Version facts about this process."""

    version: str
    #: Full commit hash, ``-dirty`` appended when built from a modified tree;
    #: "unknown" when neither a build file nor git can tell.
    commit: str
    python: str
    frozen: bool

    def line(self) -> str:
        """One line for humans: ``tqd 0.1.0 (commit 1a2b3c4, Python 3.11.7, executable)``."""
        how = "executable" if self.frozen else "source"
        return f"tqd {self.version} (commit {self.commit}, Python {self.python}, {how})"


def git_commit(root: str) -> str:
    """``git rev-parse HEAD`` in ``root``, with ``-dirty`` if tracked files changed; "" if not a checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "diff", "--quiet", "HEAD", "--"],
            capture_output=True, timeout=5,
        ).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("-dirty" if dirty else "")


def build_info() -> BuildInfo:
    """The BuildInfo of this process (reads the build file or asks git)."""
    commit = ""
    if is_frozen():
        path = asset_file(BUILD_INFO_FILE)
        if path is not None:
            try:
                commit = json.loads(path.read_text()).get("commit", "")
            except (OSError, ValueError):
                commit = ""
    elif (SOURCE_ROOT / ".git").exists():
        commit = git_commit(str(SOURCE_ROOT))
    return BuildInfo(
        version=__version__,
        commit=commit or "unknown",
        python=platform.python_version(),
        frozen=is_frozen(),
    )


def dependency_versions() -> dict[str, str]:
    """Each library of DEPENDENCIES with its version, or "missing" if it cannot be imported.

    Imports them, so it also proves the executable bundles them.
    """
    from importlib import import_module
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for module, dist in DEPENDENCIES:
        try:
            mod = import_module(module)
        except ImportError:
            found[module] = "missing"
            continue
        try:
            found[module] = version(dist)
        except PackageNotFoundError:
            found[module] = str(getattr(mod, "__version__", "present"))
    return found


def self_command() -> list[str]:
    """The argv prefix that runs this tqd again (``tqd`` itself when frozen)."""
    if is_frozen():
        return [sys.executable]
    return [sys.executable, "-m", "tqd"]
