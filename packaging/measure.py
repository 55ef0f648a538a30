"""Figures of the one-file executable: size, start time of ``tqd version``,
idle memory of ``tqd serve``. A benchmark, not a test: it prints one JSON
object and asserts nothing.

    python packaging/measure.py [dist/tqd] [--runs 20] [--idle 5]

``version_first_s`` is the first run in this call (after a fresh build it is
the first run ever: the page cache holds the file just written, so it is not
a cold disk read; dropping caches needs a privilege containers lack).
``version_*`` of the other runs are repeated warm starts. Each run of the
one-file executable unpacks itself to a new temp folder, so every run pays
for the unpacking. Idle memory is the resident set (VmRSS) of the bootloader
and of tqd (its child) after ``--idle`` seconds with no work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def time_version(binary: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([binary, "version"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def idle_memory(binary: str, idle: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--storage", f"sqlite://{tmp}/tqd.db",
             "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "listening on" not in line:
                raise SystemExit(f"tqd did not start: {line!r}")
            time.sleep(idle)  # a benchmark: let start-up garbage settle, then read
            kids = children(proc.pid)
            boot = rss_kb(proc.pid)
            tqd = sum(rss_kb(k) for k in kids)
        finally:
            proc.terminate()
            proc.wait(30)
    return {"bootloader_mb": boot / 1024, "tqd_mb": tqd / 1024, "total_mb": (boot + tqd) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?", default="dist/tqd")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    first = time_version(binary, 1)[0]
    repeated = time_version(binary, args.runs)
    figures = {
        "size_mb": round(Path(binary).stat().st_size / 2**20, 2),
        "version_first_s": round(first, 3),
        "version_median_s": round(statistics.median(repeated), 3),
        "version_max_s": round(max(repeated), 3),
        "version_runs": args.runs,
        **{k: round(v, 1) for k, v in idle_memory(binary, args.idle).items()},
    }
    json.dump(figures, sys.stdout)
    print()


if __name__ == "__main__":
    main()
