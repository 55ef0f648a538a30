"""Time a /metrics scrape of a tqd with many queues.

    PYTHONPATH=. python tools/bench_metrics.py [--queues 100] [--scrapes 200] [--storage URL]

Starts ``tqd serve`` (SQLite in a temporary directory unless --storage),
runs tasks in every queue so that every per-queue counter and histogram
exists (two task names per queue, one of them failing once), then scrapes
/metrics repeatedly over one keep-alive connection and prints one JSON line:
the size of the answer, its number of samples, and the scrape time (client
side, request sent to last byte read) at the median, p95 and max.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--queues", type=int, default=100)
    p.add_argument("--scrapes", type=int, default=200)
    p.add_argument("--storage")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="tqd-metrics-")
    storage = args.storage or f"sqlite://{tmp.name}/tqd.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tqd", "serve", "--listen", "127.0.0.1:0", "--storage", storage,
         "--log-level", "error"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)

        def call(method: str, path: str, body: object = None) -> bytes:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            out = resp.read()
            assert resp.status < 400, (resp.status, out[:200])
            return out

        tasks = []
        for i in range(args.queues):
            q = f"queue-{i:03d}"
            tasks += [{"name": "tqd.noop", "queue": q}, {"name": "tqd.echo", "queue": q},
                      {"name": "tqd.fail", "queue": q, "payload": {"retry": False}}]
        for start in range(0, len(tasks), 1000):
            call("POST", "/v1/tasks/batch", {"tasks": tasks[start:start + 1000]})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            queues = json.loads(call("GET", "/v1/queues"))["queues"]
            busy = sum(q["counts"]["pending"] + q["counts"]["processing"] for q in queues)
            if not busy:
                break
            time.sleep(0.1)
        body = call("GET", "/metrics")  # warm
        times = []
        for _ in range(args.scrapes):
            t0 = time.perf_counter()
            body = call("GET", "/metrics")
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        samples = sum(1 for line in body.decode().splitlines() if line and line[0] != "#")
        print(json.dumps({
            "queues": args.queues, "bytes": len(body), "samples": samples,
            "scrape_ms_p50": round(statistics.median(times), 2),
            "scrape_ms_p95": round(times[int(0.95 * len(times)) - 1], 2),
            "scrape_ms_max": round(times[-1], 2),
        }))
    finally:
        proc.terminate()
        proc.wait(30)
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
