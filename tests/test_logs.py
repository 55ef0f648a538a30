"""Logs: JSON lines or readable text, task fields where they apply, tracebacks for 5xx."""

from __future__ import annotations

import json
import logging
import re
import sys

from tests.helpers.daemon import Daemon, wait_until
from tqd.logs import JsonFormatter, TextFormatter


def failing_task(tqd: Daemon) -> str:
    status, task = tqd.call("POST", "/v1/tasks", {"name": "tqd.fail",
                                                  "payload": {"retry": False, "message": "boom"}})
    assert status == 201
    wait_until(lambda: tqd.call("GET", f"/v1/tasks/{task['id']}")[1]["state"] == "failed")
    return task["id"]


def test_json_logs_parse_line_by_line(tmp_path):
    tqd = Daemon(f"sqlite://{tmp_path}/tqd.db", args=["--log-format", "json"]).start()
    try:
        task_id = failing_task(tqd)
        wait_until(lambda: task_id in tqd.stderr)
    finally:
        assert tqd.stop() == 0
    lines = [line for line in tqd.stderr.splitlines() if line]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) >= 3  # listening, the failure, stopping
    for r in records:
        assert {"time", "level", "logger", "message"} <= set(r)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"])
        assert r["level"] in ("debug", "info", "warning", "error", "critical")
    about = [r for r in records if r.get("task_id") == task_id]
    assert len(about) == 1  # a task's failure is logged once
    [failure] = about
    assert failure["level"] == "warning"
    assert (failure["queue"], failure["name"], failure["logger"]) == ("default", "tqd.fail",
                                                                      "tqd.pool")
    assert "boom" in failure["message"]
    assert any(r["logger"] == "tqd.daemon" and "listening" in r["message"] for r in records)


def test_log_level_drops_what_is_below_it(tmp_path):
    tqd = Daemon(f"sqlite://{tmp_path}/tqd.db",
                 args=["--log-format", "json", "--log-level", "warning"]).start()
    try:
        task_id = failing_task(tqd)
        wait_until(lambda: task_id in tqd.stderr)
    finally:
        tqd.stop()
    records = [json.loads(line) for line in tqd.stderr.splitlines() if line]
    assert records and all(r["level"] in ("warning", "error", "critical") for r in records)


def test_text_logs_are_one_readable_line_per_record(tmp_path):
    tqd = Daemon(f"sqlite://{tmp_path}/tqd.db", args=["--log-format", "text"]).start()
    try:
        task_id = failing_task(tqd)
        wait_until(lambda: task_id in tqd.stderr)
    finally:
        tqd.stop()
    [line] = [x for x in tqd.stderr.splitlines() if task_id in x]
    assert re.match(r"^\S+Z WARNING +tqd\.pool: task ", line), line
    assert line.endswith(f"[task_id={task_id} queue=default name=tqd.fail]")
    assert "\x1b[" not in tqd.stderr  # no colours when stderr is not a terminal


def record(msg: str, exc: bool = False, **extra) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("inner")
        except RuntimeError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("tqd.x", logging.ERROR, __file__, 1, msg, (), exc_info)
    rec.__dict__.update(extra)
    return rec


def test_a_message_cannot_forge_a_line_of_its_own():
    forged = "boom\n2030-01-01T00:00:00.000Z ERROR   tqd.api: fake"
    text = TextFormatter().format(record(forged, exc=True))
    assert all(line.startswith("    ") for line in text.splitlines()[1:])
    out = JsonFormatter().format(record(forged, exc=True, task_id="t", queue="q", task_name="n"))
    assert "\n" not in out
    body = json.loads(out)
    assert body["message"] == forged and "RuntimeError: inner" in body["traceback"]
    assert (body["task_id"], body["queue"], body["name"]) == ("t", "q", "n")
