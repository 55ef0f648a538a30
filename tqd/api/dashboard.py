"""The dashboard: serves the prebuilt single-page app from ``web_assets/dist``.

``GET /`` answers ``index.html`` and ``GET /assets/{file}`` the bundle's
content-hashed files (cached for a year, since a new build has new names).
The app routes with the URL fragment (``/#/tasks``), so no other path needs
to fall back to ``index.html``. Every answer carries a Content-Security-Policy
that allows nothing but this origin: even if task data ever reached the page
as markup, no foreign script would run, and no inline one but the scripts
``index.html`` itself holds, each allowed by its SHA-256 hash (computed here
from the file served, so the policy always matches the build).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from aiohttp import web

from tqd.errors import NotFound, TqdError

#: Where the built bundle lives in a source checkout.
SOURCE_DIST = Path(__file__).resolve().parents[2] / "web_assets" / "dist"

_ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")

# connect-src 'self' covers ws:// and wss:// to this origin (CSP level 3).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# An inline classic script: <script> without attributes (a src= script is not inline).
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def index_csp(index: bytes) -> str:
    """The policy for ``index.html``: :data:`CSP` plus the hash of each inline script it holds.

    Only those exact scripts may run inline ('unsafe-inline' is never allowed):
    markup that task data might ever inject into the page stays inert.
    """
    hashes = []
    for match in _INLINE_SCRIPT.finditer(index):
        # Browsers hash the script's text as parsed: line breaks normalised to LF.
        text = match.group(1).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        digest = base64.b64encode(hashlib.sha256(text).digest()).decode()
        hashes.append(f" 'sha256-{digest}'")
    return CSP.replace("script-src 'self'", "script-src 'self'" + "".join(hashes), 1)


class DashboardMissing(TqdError):
    """The bundle is not where tqd looks for it (a checkout without web_assets/dist)."""

    code = "dashboard_missing"
    status = 503


def dist_dir() -> Path | None:
    """The folder holding the built dashboard (``index.html``), or None.

    Asks :mod:`tqd.assets` (which also knows the frozen executable's layout)
    when it is there, else looks beside the package in a source checkout.
    """
    try:
        from tqd.assets import asset_dir
    except ImportError:  # before tqd.assets existed; a source checkout
        folder: Path | None = SOURCE_DIST if SOURCE_DIST.is_dir() else None
    else:
        folder = asset_dir("web_assets", "dist")
    if folder is None or not (folder / "index.html").is_file():
        return None
    return folder


class Dashboard:
    """Serves one dist folder; ``folder=None`` answers 503 naming what is missing."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._index: bytes | None = None
        self._index_headers: dict[str, str] = {}

    def _require(self) -> Path:
        if self.folder is None:
            raise DashboardMissing(
                "the dashboard is not built: run `npm ci && npm run build` in web_assets/"
            )
        return self.folder

    def add_routes(self, app: web.Application) -> None:
        """Register ``GET /`` and ``GET /assets/{name}``."""
        app.router.add_get("/", self.index)
        app.router.add_get("/assets/{name}", self.asset)

    async def index(self, request: web.Request) -> web.Response:
        """GET / → the app's page (never cached, so a new build shows at once)."""
        folder = self._require()
        if self._index is None:
            index = (folder / "index.html").read_bytes()
            self._index_headers = {
                **SECURITY_HEADERS,
                "Content-Security-Policy": index_csp(index),
                "Cache-Control": "no-cache",
            }
            self._index = index
        return web.Response(
            body=self._index, content_type="text/html", charset="utf-8", headers=self._index_headers
        )

    async def asset(self, request: web.Request) -> web.StreamResponse:
        """GET /assets/{name} → one file of the bundle; 404 for anything else."""
        folder = self._require()
        name = request.match_info["name"]
        path = folder / "assets" / name
        if not _ASSET_NAME.fullmatch(name) or not path.is_file():
            raise NotFound(f"no dashboard asset named {name!r}")
        return web.FileResponse(
            path,
            headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=31536000, immutable"},
        )


def add_routes(app: web.Application) -> None:
    """Serve the dashboard at ``/`` from the folder :func:`dist_dir` finds."""
    Dashboard(dist_dir()).add_routes(app)
