"""Fixtures for the dashboard tests: Debian's Chromium driven by Playwright,
a real ``tqd serve`` subprocess, and screenshots saved for CI.

Chromium comes from the distribution (``apt-get install chromium``; .ci/run
installs it): Playwright's own browser downloads cannot work here. The
screenshots land in ``artifacts/screenshots/`` (CI keeps that folder).
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import ROOT, Daemon

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
#: How long a browser-side expectation may take before the test fails.
EXPECT_MS = 15_000

CONFIG = """
[tasks.flaky]
handler = "tests.dashboard.handlers:flaky"

[roles]
heartbeat_interval = 1.0
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]'")
    sync_api.expect.set_options(timeout=EXPECT_MS)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageProbe:
    """A page plus what it did that it should not: dialogs, errors, console errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("pageerror", lambda err: self.page_errors.append(str(err)))
        page.on("console", self._on_console)
        page.set_default_timeout(EXPECT_MS)

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as artifacts/screenshots/<name>.png."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def probe(browser: Any) -> Iterator[PageProbe]:
    """A fresh browser context (own sessionStorage) and page for one test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield PageProbe(context.new_page())
    finally:
        context.close()


@pytest.fixture(scope="module")
def tqd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A real ``tqd serve`` on a fresh SQLite file, with a ``flaky`` task."""
    folder = tmp_path_factory.mktemp("dashboard")
    config = folder / "tqd.toml"
    config.write_text(CONFIG)
    with Daemon(f"sqlite://{folder / 'tqd.db'}", config=config) as daemon:
        yield daemon


def serves_events(url: str) -> bool:
    """Whether this tqd has the /v1/events stream (a plain GET is not 404)."""
    try:
        with urllib.request.urlopen(url + "/v1/events", timeout=5):
            return True
    except urllib.error.HTTPError as err:
        return err.code != 404
