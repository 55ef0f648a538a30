"""The dashboard and /docs in Chromium against a tqd with real tokens: the
pages load without one, their data needs one, and the live stream carries it
as the WebSocket sub-protocol ``bearer.<token>``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.daemon import Daemon
from tqd.tokens import hash_token

from .conftest import EXPECT_MS

TOKEN = "tqd_dashboard-read-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("tokens")
    config = folder / "tqd.toml"
    config.write_text(f'[[tokens]]\nname = "browser"\nhash = "{hash_token(TOKEN)}"\nscope = "read"\n')
    with Daemon(f"sqlite://{folder / 'tqd.db'}", config=config) as daemon:
        yield daemon


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(EXPECT_MS)
        yield page
    finally:
        context.close()


def test_dashboard_asks_for_the_token_and_streams_with_it(guarded: Daemon, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{guarded.url}/#/")
    prompt = page.get_by_role("dialog")
    expect(prompt).to_contain_text("API token required")
    prompt.locator("input[name=token]").fill(TOKEN)
    prompt.get_by_role("button", name="Use token").click()
    expect(prompt).to_have_count(0)
    expect(page.locator("tr[data-queue=default]")).to_be_visible()
    # the live stream is up: its handshake carried the token as a sub-protocol
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "online")
    assert "refused an unknown token" not in guarded.stderr


def test_docs_page_asks_for_the_token_and_shows_the_document(guarded: Daemon, page: Any) -> None:
    from playwright.sync_api import expect

    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept(TOKEN)

    page.on("dialog", answer)
    page.goto(f"{guarded.url}/docs")
    expect(page.get_by_text("Enqueue a task").first).to_be_visible()
    assert asked == ["This tqd needs an API token (scope read or higher):"]
    # the token stays for the tab: no second question after a reload
    page.reload()
    expect(page.get_by_text("Enqueue a task").first).to_be_visible()
    assert len(asked) == 1
