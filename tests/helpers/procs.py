"""Looking at processes from tests: is a pid still running?"""

from __future__ import annotations

from pathlib import Path


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def read_pids(path: Path) -> list[int]:
    """The pids written one per line into ``path`` (empty when absent)."""
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []
