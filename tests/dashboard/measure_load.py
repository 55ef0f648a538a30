"""Benchmark: the dashboard's first load with 1,000,000 stored tasks.

Not a test (speed targets are reported, never asserted). Seeds a SQLite file
through ``storage.enqueue`` in large batches, starts ``tqd serve`` on it, and
times in Debian's Chromium, from navigation start, until the overview shows
its queue table, processes and charts (or their "not served" note), and
until a task page shows the task; also the API answers those pages use and
the bundle size gzipped. Run from the repository root:

    python -m tests.dashboard.measure_load [--tasks 1000000] [--db PATH]

An existing --db with tasks is reused rather than seeded again.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.daemon import Daemon
from tqd.api.dashboard import dist_dir
from tqd.ids import IdGenerator
from tqd.models import Task, make_error
from tqd.storage.factory import create_storage

QUEUES = ["default", "mail", "images", "reports"]
BATCH = 20_000


async def seed(db: Path, total: int) -> str:
    """Store ``total`` tasks (mostly finished, as in a busy day) and return one id."""
    storage = create_storage(f"sqlite://{db}")
    await storage.open()
    ids = IdGenerator()
    rng = random.Random(7)
    now = time.time()
    start = now - 86400
    sample = ""
    t0 = time.monotonic()
    for done in range(0, total, BATCH):
        batch = []
        for i in range(min(BATCH, total - done)):
            at = start + (done + i) * 86400 / total
            roll = rng.random()
            state = ("completed" if roll < 0.90 else "failed" if roll < 0.93 else
                     "cancelled" if roll < 0.94 else "scheduled" if roll < 0.95 else "pending")
            finished = state in ("completed", "failed", "cancelled")
            batch.append(Task(
                id=ids.new(at), name=f"job.{rng.randrange(20)}", queue=QUEUES[i % len(QUEUES)],
                payload=orjson.dumps({"n": done + i, "user": f"u{rng.randrange(10_000)}"}),
                state=state, created_at=at, attempts=1 if finished else 0,
                run_at=now + 86400 if state == "scheduled" else None,
                started_at=at + 0.01 if finished else None, finished_at=at + 0.02 if finished else None,
                result=b'{"ok":true}' if state == "completed" else None,
                errors=[make_error("exception", "boom", 1, at)] if state == "failed" else [],
            ))
        await storage.enqueue(batch)
        sample = batch[len(batch) // 2].id
    for q in QUEUES:  # nothing runs during the measurement
        await storage.set_paused(q, True)
    await storage.close()
    print(f"seeded {total} tasks in {time.monotonic() - t0:.1f} s")
    return sample


def api_ms(url: str, path: str, runs: int = 20) -> float | str:
    """Median time of GET ``path`` in ms, or the HTTP error it answers."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(url + path) as resp:
                resp.read()
        except urllib.error.HTTPError as err:
            return f"HTTP {err.code}"
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


OVERVIEW_READY = ("[data-testid=queue-table] tr[data-queue]", "[data-testid=worker-table]",
                  ".chart canvas, .card p.muted")
TASK_READY = ("[data-testid=task-facts]",)

# Records when every selector of a set first matches, from a MutationObserver,
# so the figure does not depend on how often Playwright polls.
WATCH = """(sets) => {
  window.__ready = {};
  const check = () => {
    for (const [key, sels] of Object.entries(sets)) {
      if (!(key in window.__ready) && sels.every((s) => document.querySelector(s))) {
        window.__ready[key] = performance.now();
      }
    }
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true });
}"""


def _ready(page, key: str) -> float:
    page.wait_for_function(f"() => window.__ready && '{key}' in window.__ready", timeout=30_000)
    return page.evaluate(f"window.__ready['{key}']")


def browser_ms(url: str, task_id: str, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    sets = {"overview": list(OVERVIEW_READY), "task": list(TASK_READY)}
    out: dict[str, list[float]] = {"overview_first": [], "task_first": [], "task_in_app": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(runs):
            for key, route in (("overview", "#/"), ("task", f"#/tasks/{task_id}")):
                ctx = browser.new_context()  # cold: empty cache
                ctx.add_init_script(f"({WATCH})({json.dumps(sets)})")
                page = ctx.new_page()
                page.goto(f"{url}/{route}")
                out[f"{key}_first"].append(_ready(page, key))
                if key == "overview":
                    t = page.evaluate("performance.now()")
                    page.evaluate(f"location.hash = '#/tasks/{task_id}'")
                    out["task_in_app"].append(_ready(page, "task") - t)
                ctx.close()
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="tqd-dash-")) / "tqd.db"
    sample_file = db.with_suffix(".sample")
    if db.exists() and sample_file.exists():
        sample = sample_file.read_text().strip()
    else:
        sample = asyncio.run(seed(db, args.tasks))
        sample_file.write_text(sample)
    dist = dist_dir()
    assert dist is not None
    bundle = {str(p.relative_to(dist)): (p.stat().st_size, len(gzip.compress(p.read_bytes(), 9)))
              for p in sorted(dist.rglob("*")) if p.is_file()}
    with Daemon(f"sqlite://{db}") as tqd:
        with urllib.request.urlopen(tqd.url + "/v1/queues") as resp:
            queues = json.loads(resp.read())["queues"]
        stored = sum(sum(q["counts"].values()) for q in queues)
        apis = {p: api_ms(tqd.url, p) for p in (
            "/", "/v1/queues", "/v1/workers", "/v1/stats?range=10m", f"/v1/tasks/{sample}",
            "/v1/tasks?limit=50", "/v1/tasks?state=failed&limit=50", "/v1/tasks?queue=mail&limit=50")}
        times = browser_ms(tqd.url, sample, args.runs)
    report = {
        "stored_tasks": stored,
        "bundle_bytes_gzip_total": sum(g for _, g in bundle.values()),
        "bundle": {k: {"bytes": s, "gzip": g} for k, (s, g) in bundle.items()},
        "api_median_ms": apis,
        "browser_ms": {k: {"median": round(statistics.median(v), 1), "max": round(max(v), 1),
                           "runs": [round(x, 1) for x in v]} for k, v in times.items()},
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
