"""Cost of the HTTP metrics middleware per request, measured in-process.

    PYTHONPATH=. python tools/bench_http_middleware.py

Calls a trivial handler 200,000 times bare and through the middleware (with
a real route's match info), three rounds each, and prints microseconds per
request. On a busy machine this isolates the middleware's cost far better
than comparing whole-daemon throughput, whose run-to-run noise is larger.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from tqd.api.metrics import HttpMeter, http_metrics_middleware

N = 200_000


async def main() -> None:
    app = web.Application()
    response = web.Response(status=201)

    async def handler(request: web.Request) -> web.Response:
        return response

    app.router.add_post("/v1/tasks", handler)
    request = make_mocked_request("POST", "/v1/tasks", app=app)
    request._match_info = await app.router.resolve(request)  # what aiohttp does per request
    middleware = http_metrics_middleware(HttpMeter())
    results: dict[str, list[float]] = {"bare": [], "middleware": []}
    for _ in range(3):
        for label, call in (("bare", lambda: handler(request)),
                            ("middleware", lambda: middleware(request, handler))):
            start = time.perf_counter()
            for _ in range(N):
                await call()
            results[label].append((time.perf_counter() - start) / N * 1e6)
    bare, through = min(results["bare"]), min(results["middleware"])
    print(f"bare {bare:.2f} us, through the middleware {through:.2f} us: "
          f"{through - bare:.2f} us per request (best of 3 x {N})")


if __name__ == "__main__":
    asyncio.run(main())
