"""The dashboard in real headless Chromium against a real ``tqd serve``.

Each test drives the page as a person would (links, buttons, dialogs) and
checks the result both on screen and through the API. Screenshots of every
page go to artifacts/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.dashboard.auth_proxy import AuthProxy
from tests.dashboard.conftest import EXPECT_MS, PageProbe, serves_events
from tests.helpers.daemon import Daemon, wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def enqueue(tqd: Daemon, name: str, payload: object = None, **fields: object) -> dict:
    status, body = tqd.call("POST", "/v1/tasks", {"name": name, "payload": payload, **fields})
    assert status == 201, body
    return body


def wait_state(tqd: Daemon, task_id: str, state: str) -> dict:
    def check() -> dict | None:
        _, task = tqd.call("GET", f"/v1/tasks/{task_id}?wait=5")
        return task if task["state"] == state else None

    return wait_until(check, timeout=20, message=f"task {task_id} {state}")


def require_events(tqd: Daemon) -> None:
    if not serves_events(tqd.url):
        pytest.skip("this tqd does not serve GET /v1/events yet (issue 4): live updates cannot be shown")


def test_every_page_renders(tqd: Daemon, probe: PageProbe) -> None:
    done = enqueue(tqd, "tqd.echo", {"hello": "world"})
    dead = enqueue(tqd, "tqd.fail", {"retry": False, "message": "broken on purpose"})
    wait_state(tqd, done["id"], "completed")
    wait_state(tqd, dead["id"], "failed")
    page = probe.page
    pages = [
        ("overview", "#/", "Overview"),
        ("queue", "#/queues/default", "Queue default"),
        ("tasks", "#/tasks", "Tasks"),
        ("task", f"#/tasks/{done['id']}", f"Task {done['id']}"),
        ("dead-letters", "#/dead", "Dead letters"),
        ("workers", "#/workers", "Workers"),
        ("schedules", "#/schedules", "Schedules"),
    ]
    for shot, route, heading in pages:
        page.goto(f"{tqd.url}/{route}")
        expect(page.locator("h1")).to_have_text(heading)
        if shot == "overview":
            expect(page.locator("tr[data-queue=default] td[data-state=completed]")).not_to_have_text("0")
            expect(page.get_by_test_id("worker-table")).to_be_visible()
            expect(page.locator(".chart, .card p.muted").first).to_be_visible()
        elif shot == "task":
            expect(page.get_by_test_id("json-payload")).to_contain_text('"hello": "world"')
            expect(page.get_by_test_id("json-result")).to_contain_text('"hello": "world"')
        elif shot == "dead-letters":
            expect(page.locator(f"tr[data-task-id='{dead['id']}']")).to_contain_text("broken on purpose")
        elif shot == "workers":
            expect(page.get_by_test_id("worker-table")).to_contain_text("ago")
        elif shot == "schedules":
            expect(page.get_by_text("No schedules configured").or_(page.get_by_test_id("schedule-table"))).to_be_visible()
        probe.screenshot(shot)
    assert probe.page_errors == []
    assert probe.dialogs == []


def test_enqueued_task_appears_live(tqd: Daemon, probe: PageProbe) -> None:
    require_events(tqd)
    tqd.call("POST", "/v1/queues/live/pause")  # keeps the tasks pending
    page = probe.page
    page.goto(f"{tqd.url}/#/tasks?queue=live")
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "online")
    task = enqueue(tqd, "tqd.noop", queue="live")
    expect(page.locator(f"tr[data-task-id='{task['id']}']")).to_contain_text("pending")

    page.get_by_role("link", name="Overview").click()
    cell = page.locator("tr[data-queue=live] td[data-state=pending]")
    expect(cell).to_have_text("1")
    enqueue(tqd, "tqd.noop", queue="live")
    expect(cell).to_have_text("2")  # the count follows without a reload


def test_failed_task_is_retried_by_click_and_completes(tqd: Daemon, probe: PageProbe) -> None:
    task = enqueue(tqd, "flaky", {"n": 1})
    wait_state(tqd, task["id"], "failed")
    page = probe.page
    page.goto(f"{tqd.url}/#/tasks/{task['id']}")
    badge = page.locator(".page-head .badge")
    expect(badge).to_have_text("failed")
    expect(page.get_by_test_id("attempts")).to_contain_text("first attempt fails on purpose")
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(badge).to_have_text("completed")
    expect(page.get_by_test_id("json-result")).to_contain_text('"ok": true')
    _, stored = tqd.call("GET", f"/v1/tasks/{task['id']}")
    assert stored["state"] == "completed" and stored["attempts"] == 2
    probe.screenshot("task-retried")


def test_queue_is_paused_and_resumed_from_its_page(tqd: Daemon, probe: PageProbe) -> None:
    enqueue(tqd, "tqd.noop", queue="steer")
    page = probe.page
    page.goto(f"{tqd.url}/#/queues/steer")
    toggle = page.get_by_test_id("pause-toggle")
    expect(toggle).to_have_text("Pause")
    toggle.click()
    expect(page.locator(".page-head .badge")).to_have_text("paused")
    assert tqd.call("GET", "/v1/queues/steer")[1]["paused"] is True
    probe.screenshot("queue-paused")
    expect(toggle).to_have_text("Resume")
    toggle.click()
    expect(page.locator(".page-head .badge")).to_have_text("running")
    assert tqd.call("GET", "/v1/queues/steer")[1]["paused"] is False


def test_destructive_actions_ask_first_and_show_api_errors(tqd: Daemon, probe: PageProbe) -> None:
    done = enqueue(tqd, "tqd.noop", queue="purgeme")
    wait_state(tqd, done["id"], "completed")
    page = probe.page
    page.goto(f"{tqd.url}/#/queues/purgeme")
    page.locator("select").select_option("completed")
    page.get_by_role("button", name="Purge…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete every completed task of purgeme?")
    dialog.get_by_role("button", name="Back").click()
    expect(dialog).to_have_count(0)
    assert tqd.call("GET", "/v1/queues/purgeme")[1]["counts"]["completed"] == 1

    page.get_by_role("button", name="Purge…").click()
    page.get_by_role("dialog").get_by_role("button", name="Purge").click()
    expect(page.locator(".notice-ok")).to_contain_text("1 task deleted")
    assert tqd.call("GET", "/v1/queues/purgeme")[1]["counts"]["completed"] == 0

    # An action that the API refuses shows the API's own message.
    tqd.call("POST", "/v1/queues/gone/pause")
    task = enqueue(tqd, "tqd.noop", queue="gone")
    page.goto(f"{tqd.url}/#/tasks/{task['id']}")
    expect(page.locator(".page-head .badge")).to_have_text("pending")
    assert tqd.call("DELETE", f"/v1/tasks/{task['id']}")[0] == 204
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel task").click()
    expect(page.locator(".notice-error")).to_contain_text(f"no task with id '{task['id']}'")
    probe.screenshot("action-error")

    # A page for a queue name the API refuses shows that error too.
    page.goto(f"{tqd.url}/#/queues/{'bad%20name'}")
    expect(page.locator(".error-box")).to_contain_text("queue: 1 to 128 letters")
    assert probe.dialogs == []


def test_token_prompt_appears_when_the_api_answers_401(tqd: Daemon, probe: PageProbe) -> None:
    with AuthProxy(tqd.url, "s3cret-token") as proxy:
        page = probe.page
        page.goto(f"{proxy.url}/#/")
        prompt = page.get_by_role("dialog")
        expect(prompt).to_contain_text("API token required")
        probe.screenshot("token-prompt")
        prompt.locator("input[name=token]").fill("s3cret-token")
        prompt.get_by_role("button", name="Use token").click()
        expect(prompt).to_have_count(0)
        expect(page.locator("tr[data-queue=default]")).to_be_visible()
        assert ("/v1/queues", "Bearer s3cret-token") in proxy.seen
        assert page.evaluate("sessionStorage.getItem('tqd.token')") == "s3cret-token"
        # The event stream offers the token as a sub-protocol (browsers send no
        # headers of their own choosing on a WebSocket).
        wait_until(lambda: any("bearer.s3cret-token" in p for p in proxy.ws_protocols),
                   timeout=EXPECT_MS / 1000, message="a WebSocket handshake offering the token")
        assert any(p.split(",")[0].strip() == "tqd" for p in proxy.ws_protocols if "bearer." in p)
        assert proxy.cookies == []
        assert page.context.cookies() == []


def test_offline_is_shown_and_the_stream_comes_back(tqd: Daemon, probe: PageProbe, tmp_path) -> None:
    require_events(tqd)
    db = tmp_path / "restart.db"
    first = Daemon(f"sqlite://{db}").start()
    listen = re.sub(r"^http://", "", first.url)
    page = probe.page
    try:
        page.goto(f"{first.url}/#/")
        status = page.get_by_test_id("live-status")
        expect(status).to_have_attribute("data-state", "online")
        first.kill()  # the connection drops as in a crash
        expect(status).to_have_attribute("data-state", "offline")
        expect(status).to_contain_text("offline")
        probe.screenshot("offline")
    finally:
        first.kill()
    with Daemon(f"sqlite://{db}", listen=listen) as second:
        expect(status).to_have_attribute("data-state", "online", timeout=30_000)
        task = enqueue(second, "tqd.noop", queue="after")
        expect(page.locator("tr[data-queue=after]")).to_be_visible()
        assert task["id"]
        page.goto("about:blank")  # close the stream before tqd stops
