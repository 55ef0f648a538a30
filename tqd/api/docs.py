"""``/openapi.json`` and ``/docs``: the API contract and its page in a browser.

The page is Swagger UI from files bundled with tqd (docs_assets/; see its
README for where they come from), so it works with no network.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from aiohttp import web

from tqd.api.app import services
from tqd.api.openapi import build_document
from tqd.errors import NotFound

ASSETS = Path(__file__).parent / "docs_assets"
#: What /docs/{file} serves: our initializer and Swagger UI's files.
FILES: dict[str, Path] = {
    "docs.js": ASSETS / "docs.js",
    **{p.name: p for p in sorted((ASSETS / "swagger-ui").glob("*"))
       if p.suffix in (".js", ".css", ".png")},
}
_CACHE = web.AppKey("openapi_cache", dict)


async def openapi_json(request: web.Request) -> web.Response:
    """GET /openapi.json → the OpenAPI 3.1 document of this tqd."""
    cache = request.app[_CACHE]
    config = services(request).config
    if cache.get("config") is not config:
        # Built once per configuration (a reload may change task names and limits).
        cache["body"] = orjson.dumps(build_document(request.app, config))
        cache["config"] = config
    return web.Response(body=cache["body"], content_type="application/json")


async def docs_page(request: web.Request) -> web.FileResponse:
    """GET /docs → the API in the browser (Swagger UI)."""
    return web.FileResponse(ASSETS / "index.html", headers={"Content-Type": "text/html"})


async def docs_file(request: web.Request) -> web.FileResponse:
    """GET /docs/{file} → a file of the /docs page."""
    path = FILES.get(request.match_info["file"])
    if path is None:
        raise NotFound(f"no file {request.match_info['file'][:100]!r} in /docs")
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


def add_routes(app: web.Application) -> None:
    app[_CACHE] = {}
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/{file}", docs_file)
