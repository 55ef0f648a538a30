"""Queue limits and task groups in the dashboard, in real headless Chromium
against a real ``tqd serve``: the Queue page shows the limits, its form
changes them with ``PATCH /v1/queues/{queue}`` (only the fields changed),
a value the API refuses shows the API's own error, and a change made
elsewhere shows up without a reload.

Needs the API that reports and takes limits (``"limits"`` in the queue
JSON, ``PATCH /v1/queues/{queue}``, ``"group"`` in the task JSON).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import PageProbe
from tests.helpers.daemon import Daemon

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def make_queue(tqd: Daemon, queue: str, **fields: Any) -> dict:
    """A queue named by enqueueing a task to it far in the future (it never runs)."""
    status, task = tqd.call("POST", "/v1/tasks", {"name": "tqd.echo", "queue": queue, "delay": 86400, **fields})
    assert status == 201, task
    return task


def stored_limits(tqd: Daemon, queue: str) -> dict:
    status, body = tqd.call("GET", f"/v1/queues/{queue}")
    assert status == 200, body
    return body["limits"]


def patch(tqd: Daemon, queue: str, body: dict) -> tuple[int, Any]:
    return tqd.call("PATCH", f"/v1/queues/{queue}", body)


def record_patches(page: Any) -> list[dict]:
    """The JSON bodies of the PATCH requests the page sends, in order."""
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "PATCH" else None)
    return sent


def test_concurrency_is_edited_on_the_queue_page(tqd: Daemon, probe: PageProbe) -> None:
    make_queue(tqd, "limited")
    status, body = patch(tqd, "limited", {"concurrency": 3, "rate_limit": 10, "rate_interval": 60})
    assert status == 200, body
    page = probe.page
    sent = record_patches(page)
    page.goto(f"{tqd.url}/#/queues/limited")
    limits = page.get_by_test_id("limits")
    expect(limits.locator("[data-limit=concurrency]")).to_have_text("3")
    expect(limits.locator("[data-limit=rate]")).to_have_text("10 per 60 s, burst 10 (default)")
    expect(limits.locator("[data-limit=group_concurrency]")).to_have_text("none")

    page.get_by_test_id("limits-edit").click()
    form = page.get_by_test_id("limits-form")
    expect(form.locator("input[name=concurrency]")).to_have_value("3")
    form.locator("input[name=concurrency]").fill("5")
    form.get_by_role("button", name="Save limits").click()
    expect(limits.locator("[data-limit=concurrency]")).to_have_text("5")
    expect(form).to_have_count(0)
    assert sent == [{"concurrency": 5}], "only the changed field is sent"
    stored = stored_limits(tqd, "limited")
    assert stored["concurrency"] == 5
    assert (stored["rate_limit"], stored["rate_interval"]) == (10, 60), "untouched limits kept"
    probe.screenshot("queue-limits")

    # Emptying a field removes that limit.
    page.get_by_test_id("limits-edit").click()
    form.locator("input[name=concurrency]").fill("")
    form.get_by_role("button", name="Save limits").click()
    expect(limits.locator("[data-limit=concurrency]")).to_have_text("none")
    assert sent[-1] == {"concurrency": None}
    assert stored_limits(tqd, "limited")["concurrency"] is None

    # The overview's queue table has them in short.
    page.goto(f"{tqd.url}/#/")
    expect(page.locator("tr[data-queue=limited] td[data-limits]")).to_have_text("10/60 s")
    assert probe.page_errors == [] and probe.console_errors == []


def test_a_refused_value_shows_the_api_error(tqd: Daemon, probe: PageProbe) -> None:
    make_queue(tqd, "refusing")
    status, body = patch(tqd, "refusing", {"concurrency": 2})
    assert status == 200, body
    # What the API itself says about this value, to find on the page.
    status, refused = patch(tqd, "refusing", {"concurrency": 0})
    assert status == 400, refused
    message = refused["error"]["message"]
    assert "concurrency" in message

    page = probe.page
    sent = record_patches(page)
    page.goto(f"{tqd.url}/#/queues/refusing")
    page.get_by_test_id("limits-edit").click()
    form = page.get_by_test_id("limits-form")
    form.locator("input[name=concurrency]").fill("0")
    form.get_by_role("button", name="Save limits").click()
    expect(page.get_by_test_id("limits-error")).to_have_text(message)
    assert sent == [{"concurrency": 0}]
    # Refused: nothing changed, and the form stays open to fix the value.
    expect(page.get_by_test_id("limits").locator("[data-limit=concurrency]")).to_have_text("2")
    expect(form.locator("input[name=concurrency]")).to_have_value("0")
    assert stored_limits(tqd, "refusing")["concurrency"] == 2
    probe.screenshot("queue-limits-refused")

    # Text that is no number is refused before any request.
    form.locator("input[name=concurrency]").fill("lots")
    form.get_by_role("button", name="Save limits").click()
    expect(page.get_by_test_id("limits-error")).to_have_text("concurrency: not a number: lots")
    assert len(sent) == 1
    # The 400 is an answer, not a page error; Chromium logs the failed
    # request itself to the console, which is all it may log.
    assert probe.page_errors == []
    assert all("400" in e for e in probe.console_errors), probe.console_errors


def test_limits_changed_elsewhere_show_without_a_reload(tqd: Daemon, probe: PageProbe) -> None:
    make_queue(tqd, "elsewhere")
    page = probe.page
    page.goto(f"{tqd.url}/#/queues/elsewhere")
    group = page.get_by_test_id("limits").locator("[data-limit=group_concurrency]")
    expect(group).to_have_text("none")
    status, body = patch(tqd, "elsewhere", {"group_concurrency": 2, "rate_limit": 7, "rate_burst": 3})
    assert status == 200, body
    expect(group).to_have_text("2")
    expect(page.get_by_test_id("limits").locator("[data-limit=rate]")).to_have_text("7 per 1 s, burst 3")


def test_a_task_shows_its_group(tqd: Daemon, probe: PageProbe) -> None:
    # The API allows names only (letters, digits, '.', '_', '-'), so no markup
    # can reach the page; the dashboard renders it as a text node regardless.
    group = "tenant-42.eu_west"
    task = make_queue(tqd, "grouped", group=group)  # POST /v1/tasks takes "group"
    assert task["group"] == group
    page = probe.page
    page.goto(f"{tqd.url}/#/tasks/{task['id']}")
    expect(page.get_by_test_id("task-group")).to_have_text(group)
    page.goto(f"{tqd.url}/#/tasks?queue=grouped")
    cell = page.locator(f'tr[data-task-id="{task["id"]}"] td[data-group]')
    expect(cell).to_have_text(group)

    # A task without a group shows none.
    plain = make_queue(tqd, "grouped")
    assert plain["group"] is None
    page.goto(f"{tqd.url}/#/tasks/{plain['id']}")
    expect(page.get_by_test_id("task-group")).to_have_text("—")
    assert probe.page_errors == [] and probe.console_errors == []
