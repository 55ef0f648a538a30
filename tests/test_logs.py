"""Logs: JSON lines or readable text, task fields where they apply; a failure
is one line, its traceback only at DEBUG; an outage is throttled."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

from tests.helpers.daemon import Daemon, wait_until
from tqd.errors import redact, safe_url
from tqd.logs import JsonFormatter, TextFormatter, Throttle, log_failure
from tqd.storage.sqlite import SqliteStorage


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


def test_redact_hides_the_user_and_password_of_every_url():
    assert redact("redis://:s3cret@h:6379/0 and rediss://u:p/w@x/1") == \
        "redis://***@h:6379/0 and rediss://***@x/1"
    assert redact("Error 111 connecting to 127.0.0.1:6379.") == "Error 111 connecting to 127.0.0.1:6379."
    assert redact("mail me at a@b.c") == "mail me at a@b.c"  # no URL, nothing to hide


def test_safe_url_hides_credentials_even_with_an_at_sign_in_the_password():
    assert safe_url("redis://u:p@ss@h:6379/2") == "redis://***@h:6379/2"
    assert safe_url("rediss://h:6380/0") == "rediss://h:6380/0"
    assert safe_url("external") == "external"


def _fail(logger: logging.Logger) -> None:
    try:
        raise ValueError("bad value at redis://:s3cret@h/0")
    except ValueError:
        log_failure(logger, "doing %s failed", "it")


def test_a_failure_is_one_line_and_its_traceback_only_at_debug(caplog):
    logger = logging.getLogger("tqd.test_failure")
    with caplog.at_level(logging.INFO, logger=logger.name):
        _fail(logger)
    [rec] = caplog.records
    assert rec.levelno == logging.ERROR and rec.exc_info is None
    assert rec.getMessage() == "doing it failed (ValueError: bad value at redis://***@h/0)"
    assert rec.funcName == "_fail"  # the line of the caller
    for fmt in (TextFormatter(), JsonFormatter()):
        assert "Traceback" not in fmt.format(rec) and "s3cret" not in fmt.format(rec)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        _fail(logger)
    line, trace = caplog.records
    assert (line.levelno, line.exc_info) == (logging.ERROR, None)
    assert trace.levelno == logging.DEBUG and trace.getMessage() == "doing it failed: traceback"
    assert "Traceback" in TextFormatter().format(trace)
    assert "ValueError" in json.loads(JsonFormatter().format(trace))["traceback"]


def test_a_failing_change_listener_is_one_line(tmp_path: Path, caplog):
    store = SqliteStorage(str(tmp_path / "tqd.db"))  # not opened: only its listeners run

    def broken(changes):
        raise KeyError("oops")

    store.add_listener(broken)
    with caplog.at_level(logging.INFO):
        store._emit(["a change"])
    [rec] = caplog.records
    assert rec.levelno == logging.ERROR and rec.exc_info is None
    assert rec.getMessage() == "a change listener failed (KeyError: 'oops')"


async def test_a_throttle_writes_the_first_then_a_summary_per_period(caplog):
    logger = logging.getLogger("tqd.test_throttle")
    throttle = Throttle(logger, every=3600)
    with caplog.at_level(logging.INFO, logger=logger.name):
        for i in range(10):
            throttle.log("request %d refused", i)
        assert [r.getMessage() for r in caplog.records] == [
            "request 0 refused; more like it are counted, logged once per 3600s"]
        throttle.close()  # at exit: what was held back is counted, not lost
        assert caplog.records[-1].getMessage() == "request 9 refused; 9 like it in the last 3600s"
        throttle.log("request %d refused", 10)  # a new run: written at once
    assert len(caplog.records) == 3 and caplog.records[-1].getMessage().startswith("request 10 ")
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    throttle.close()
