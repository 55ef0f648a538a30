"""packaging/tqd.service: systemd accepts it, its sandbox scores well, and its
settings agree with tqd's (notify type, paths, stop timeout vs. shutdown_grace).

Needs no executable: ``systemd-analyze verify`` checks that ExecStart's
program exists, so a copy of the unit names /usr/bin/true instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.daemon import ROOT
from tqd.config import Config

UNIT = ROOT / "packaging" / "tqd.service"
MAX_EXPOSURE = 2.0


def settings() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


def need_systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd; .ci/run does)")
    return tool


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = need_systemd_analyze()
    unit = tmp_path / "tqd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/tqd", "/usr/bin/true"))
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr


def test_sandbox_exposure_is_low(tmp_path: Path) -> None:
    tool = need_systemd_analyze()
    done = subprocess.run([tool, "security", "--offline=yes", "--no-pager", str(UNIT)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for tqd\.service: ([\d.]+)", done.stdout)
    assert m, done.stdout[-2000:] + done.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, done.stdout


def test_unit_settings_match_tqd() -> None:
    s = settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["all"]  # tqd runs in the bootloader's child
    assert s["ExecStart"] == ["/usr/local/bin/tqd serve --config /etc/tqd/tqd.toml"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["StateDirectory"] == ["tqd"] and s["ConfigurationDirectory"] == ["tqd"]
    assert s["RestartPreventExitStatus"] == ["2"]  # tqd's status for a bad config
    # Stopping must outlast the drain: shutdown_grace plus time to hand back leases.
    grace = Config().shutdown_grace
    assert seconds(s["TimeoutStopSec"][0]) >= grace + 10
    assert s["KillMode"] == ["mixed"]
    assert seconds(s["WatchdogSec"][0]) >= 10
    for key, value in {
        "DynamicUser": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute": "yes",
        "SystemCallErrorNumber": "EPERM",
    }.items():
        assert s[key] == [value], key
    assert "@system-service" in s["SystemCallFilter"]
