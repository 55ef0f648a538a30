"""A task page's first load: index.html asks for the task before the app's
code has loaded, and the app takes that answer instead of asking again.

The request must be the app's own in every way that matters: the session's
token (never a cookie), the token prompt on 401, and the page's CSP must let
the inline script run (by its hash) without any console error.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from playwright.sync_api import expect

from tests.dashboard.auth_proxy import AuthProxy
from tests.dashboard.conftest import PageProbe
from tests.helpers.daemon import Daemon, wait_until


def enqueue(tqd: Daemon, **fields: object) -> dict:
    status, body = tqd.call("POST", "/v1/tasks", {"name": "tqd.noop", "queue": "preload", **fields})
    assert status == 201, body
    return body


def _task_requests(page: Any, task_id: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.url.endswith(f"/v1/tasks/{task_id}") else None)
    return seen


def test_first_load_of_a_task_page_asks_for_the_task_once(tqd: Daemon, probe: PageProbe) -> None:
    task = enqueue(tqd, delay=86400, payload={"from": "preload"})
    page = probe.page
    # Nothing else may ask for the task meanwhile: timers stand still (no
    # offline polling) and the event stream never greets (no resync).
    page.clock.install(time=dt.datetime(2030, 1, 1))
    page.clock.pause_at(dt.datetime(2030, 1, 1, 0, 0, 1))
    page.route_web_socket("**/v1/events*", lambda ws: None)
    requests = _task_requests(page, task["id"])
    page.goto(f"{tqd.url}/#/tasks/{task['id']}")
    expect(page.get_by_test_id("json-payload")).to_contain_text('"from": "preload"')
    assert len(requests) == 1, requests
    assert page.evaluate("window.__tqdPreload") is None  # handed out, not kept
    assert probe.page_errors == [] and probe.console_errors == []


def test_other_pages_start_no_early_request(tqd: Daemon, probe: PageProbe) -> None:
    page = probe.page
    page.goto(f"{tqd.url}/#/tasks?queue=preload")
    expect(page.locator("h1")).to_have_text("Tasks")
    assert page.evaluate("window.__tqdPreload") is None
    assert probe.console_errors == []


def test_the_early_request_carries_the_sessions_token(tqd: Daemon, probe: PageProbe) -> None:
    task = enqueue(tqd, delay=86400)
    with AuthProxy(tqd.url, "early-token") as proxy:
        page = probe.page
        page.context.add_init_script("sessionStorage.setItem('tqd.token', 'early-token')")
        page.goto(f"{proxy.url}/#/tasks/{task['id']}")
        expect(page.get_by_test_id("task-facts")).to_be_visible()
        asked = [auth for path, auth in proxy.seen if path == f"/v1/tasks/{task['id']}"]
        assert asked and all(auth == "Bearer early-token" for auth in asked)
        expect(page.get_by_role("dialog")).to_have_count(0)
        assert proxy.cookies == []
        # (the proxy refuses the event stream: browsers send no Authorization on a WebSocket)
        assert [e for e in probe.console_errors if "Content Security Policy" in e] == []


def test_an_early_401_raises_the_token_prompt(tqd: Daemon, probe: PageProbe) -> None:
    task = enqueue(tqd, delay=86400)
    with AuthProxy(tqd.url, "late-token") as proxy:
        page = probe.page
        page.goto(f"{proxy.url}/#/tasks/{task['id']}")
        prompt = page.get_by_role("dialog")
        expect(prompt).to_contain_text("API token required")
        expect(page.locator(".error-box")).to_be_visible()
        prompt.locator("input[name=token]").fill("late-token")
        prompt.get_by_role("button", name="Use token").click()
        expect(page.get_by_test_id("task-facts")).to_be_visible()
        wait_until(lambda: (f"/v1/tasks/{task['id']}", "Bearer late-token") in proxy.seen,
                   message="the task fetched again with the token")
        assert proxy.cookies == []
