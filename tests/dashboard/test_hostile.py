"""Hostile task data is shown as text and never runs.

Names and queues cannot hold markup through the API (it checks them), but a
store shared with other processes or an older version could, so the test
writes such tasks straight into the SQLite file before tqd starts. Payloads,
results and error messages with markup go through the API as any client's
would. The page must show every string as written, run none of it (no dialog,
no global set by the injected code), and inject no element at all (which the
Content-Security-Policy would block but still report as a console error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import PageProbe
from tests.helpers.daemon import Daemon, wait_until
from tqd.api.dashboard import dist_dir
from tqd.ids import IdGenerator
from tqd.models import Task
from tqd.storage.factory import create_storage

SCRIPT = "<script>window.__pwned='script'</script>"
IMG = "<img src=x onerror=\"window.__pwned='img'\">"
QUOTES = "\"'><svg onload=\"window.__pwned='svg'\"></svg>"
ALERT = "<b onmouseover=alert(1)>bold</b>&amp;&lt;"
LONG = "L" * 6000 + SCRIPT
HOSTILE_NAME = f"{SCRIPT}{QUOTES}"
HOSTILE_QUEUE = f"q{IMG}"
PAYLOAD = {"html": SCRIPT, IMG: QUOTES, "alert": ALERT, "long": LONG, "nested": [{"a": SCRIPT}]}


async def _seed(path: Path) -> list[str]:
    storage = create_storage(f"sqlite://{path}")
    await storage.open()
    ids = IdGenerator()
    now = time.time()
    tasks = [
        # Scheduled a day ahead, so no worker touches them during the test.
        Task(id=ids.new(now), name=HOSTILE_NAME, queue=HOSTILE_QUEUE, payload=orjson.dumps(PAYLOAD),
             state="scheduled", run_at=now + 86400, created_at=now, idempotency_key=QUOTES),
        Task(id=ids.new(now), name=LONG, queue="default", payload=b"null",
             state="scheduled", run_at=now + 86400, created_at=now),
    ]
    await storage.enqueue(tasks)
    await storage.close()
    return [t.id for t in tasks]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("hostile")
    db = folder / "tqd.db"
    seeded = asyncio.run(_seed(db))
    with Daemon(f"sqlite://{db}") as daemon:
        _, echo = daemon.call("POST", "/v1/tasks", {"name": "tqd.echo", "payload": PAYLOAD})
        _, fail = daemon.call("POST", "/v1/tasks", {
            "name": "tqd.fail", "payload": {"retry": False, "message": f"{SCRIPT} {IMG} {ALERT}"}})

        def settled() -> bool:
            states = [daemon.call("GET", f"/v1/tasks/{t['id']}")[1]["state"] for t in (echo, fail)]
            return states == ["completed", "failed"]

        wait_until(settled, timeout=20, message="echo completed and fail failed")
        yield daemon, {"named": seeded[0], "long": seeded[1], "echo": echo["id"], "fail": fail["id"]}


def _assert_inert(probe: PageProbe) -> None:
    page = probe.page
    assert page.evaluate("window.__pwned") is None
    assert probe.dialogs == []
    assert probe.page_errors == []
    assert [e for e in probe.console_errors if "Content Security Policy" in e] == []
    # No element from the data: index.html's own scripts (the bundle and the
    # preload) are the only ones.
    dist = dist_dir()
    assert dist is not None
    assert page.locator("script").count() == (dist / "index.html").read_text().count("<script")
    assert page.locator("img, svg, b").count() == 0


def test_hostile_data_is_shown_as_text_and_runs_nothing(hostile, probe: PageProbe) -> None:
    tqd, ids = hostile
    page = probe.page

    page.goto(f"{tqd.url}/#/")
    expect(page.locator("tr[data-queue]").filter(has_text=HOSTILE_QUEUE)).to_have_count(1)
    _assert_inert(probe)

    page.goto(f"{tqd.url}/#/tasks?state=scheduled")
    row = page.locator(f"tr[data-task-id='{ids['named']}']")
    expect(row).to_contain_text(HOSTILE_NAME)
    expect(row).to_contain_text(HOSTILE_QUEUE)
    expect(page.locator(f"tr[data-task-id='{ids['long']}']")).to_be_visible()
    probe.screenshot("hostile-tasks")
    _assert_inert(probe)

    # A first load of the task page (not a hash change): its task comes
    # through the request index.html starts.
    page.goto("about:blank")
    page.goto(f"{tqd.url}/#/tasks/{ids['named']}")
    expect(page.get_by_test_id("task-name")).to_have_text(HOSTILE_NAME)
    payload = page.get_by_test_id("json-payload")
    expect(payload).to_contain_text(SCRIPT)
    expect(payload).to_contain_text(ALERT)
    expect(payload).to_contain_text(LONG[-200:])
    expect(page.get_by_test_id("task-facts")).to_contain_text(QUOTES)
    probe.screenshot("hostile-task")
    _assert_inert(probe)

    page.goto(f"{tqd.url}/#/tasks/{ids['echo']}")
    expect(page.get_by_test_id("json-result")).to_contain_text(IMG.replace('"', '\\"'))
    _assert_inert(probe)

    page.goto(f"{tqd.url}/#/dead")
    expect(page.locator(f"tr[data-task-id='{ids['fail']}']")).to_contain_text(f"{SCRIPT} {IMG}")
    page.goto(f"{tqd.url}/#/tasks/{ids['fail']}")
    expect(page.get_by_test_id("attempts")).to_contain_text(f"{SCRIPT} {IMG} {ALERT}")
    probe.screenshot("hostile-dead-letter")
    _assert_inert(probe)

    # The queue's own page: the API refuses the name, and says so as text.
    page.goto(f"{tqd.url}/#/")
    page.locator("tr[data-queue] a").filter(has_text=HOSTILE_QUEUE).click()
    expect(page.locator("h1")).to_have_text(f"Queue {HOSTILE_QUEUE}")
    # the queue's counts, its task list (an invalid filter is a 400) and its charts each say so
    expect(page.locator(".error-box").first).to_contain_text("queue:")
    _assert_inert(probe)
