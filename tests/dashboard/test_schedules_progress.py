"""The dashboard's schedules page and a task's progress, in real headless
Chromium against a real ``tqd serve`` with a schedule and an exec task that
reports progress."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import PageProbe
from tests.helpers.daemon import Daemon, wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CONFIG = """
[tasks.crunch]
handler = { kind = "exec", command = ["/bin/sh", "-c", "echo 'TQD-PROGRESS 0.4 crunching numbers' >&2; exec sleep 60"] }

[roles]
progress_interval = 0.2

[schedules.nightly]
cron = "30 2 * * *"
timezone = "Europe/Riga"
task = "tqd.echo"
payload = { from = "nightly" }
queue = "reports"
"""


@pytest.fixture(scope="module")
def tqd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("dashboard-flow")
    config = folder / "tqd.toml"
    config.write_text(CONFIG)
    with Daemon(f"sqlite://{folder / 'tqd.db'}", config=config) as daemon:
        yield daemon


def test_a_schedule_is_listed_and_triggered(tqd: Daemon, probe: PageProbe) -> None:
    page = probe.page
    page.goto(f"{tqd.url}/#/schedules")
    table = page.get_by_test_id("schedule-table")
    row = table.locator("tbody tr", has_text="nightly")
    expect(row).to_contain_text("30 2 * * * Europe/Riga")
    expect(row).to_contain_text("tqd.echo")
    expect(row).to_contain_text("reports")
    expect(row).to_contain_text("never")
    next_cell = row.locator("td").nth(5)
    _, listed = tqd.call("GET", "/v1/schedules")
    assert next_cell.get_attribute("title") == listed["schedules"][0]["next_fire_at"]
    probe.screenshot("schedules")

    row.get_by_role("button", name="Trigger now").click()
    page.get_by_role("dialog").get_by_role("button", name="Trigger").click()
    notice = page.locator(".notice-ok")
    expect(notice).to_contain_text("nightly fired: task ")
    task_id = notice.inner_text().split("task ")[-1].strip().split()[0]
    _, task = tqd.call("GET", f"/v1/tasks/{task_id}?wait=10")
    assert (task["name"], task["queue"], task["state"]) == ("tqd.echo", "reports", "completed")
    assert task["result"] == {"from": "nightly"}
    assert probe.page_errors == [] and probe.console_errors == []


def test_a_running_task_shows_its_progress(tqd: Daemon, probe: PageProbe) -> None:
    status, task = tqd.call("POST", "/v1/tasks", {"name": "crunch"})
    assert status == 201, task

    def reported() -> dict | None:
        _, t = tqd.call("GET", f"/v1/tasks/{task['id']}")
        return t if t["progress"] else None

    shown = wait_until(reported, timeout=20, message="progress stored")
    assert shown["progress"]["fraction"] == 0.4
    page = probe.page
    page.goto(f"{tqd.url}/#/tasks/{task['id']}")
    section = page.locator(".progress")
    expect(section).to_contain_text("40 %")
    expect(section).to_contain_text("crunching numbers")
    assert page.locator("progress").get_attribute("value") == "0.4"
    probe.screenshot("task-progress")
    assert tqd.call("POST", f"/v1/tasks/{task['id']}/cancel")[0] == 200
    assert probe.page_errors == [] and probe.console_errors == []
