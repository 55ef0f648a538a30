"""Logging for the daemon: readable lines, or one JSON object per line.

``text`` (and ``auto``, the default) writes ``time LEVEL logger: message``
lines to stderr, the level coloured when stderr is a terminal; the lines of
a multi-line message or traceback are indented, so nothing a task puts in an
error can pass for a log line of its own. ``json`` writes one object per
line with ``time`` (RFC 3339, UTC), ``level``, ``logger`` and ``message``,
plus ``task_id``, ``queue`` and ``name`` when the record is about a task
(``extra={"task_id", "queue", "task_name"}``) and ``traceback`` when it
carries one. Both formats take the same records, so what one logs the other
logs too.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

#: LogRecord attributes that describe a task, and their names in the output.
TASK_FIELDS = (("task_id", "task_id"), ("queue", "queue"), ("task_name", "name"))

_COLOURS = {"DEBUG": "2", "INFO": "36", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attr, key in TASK_FIELDS:
            value = getattr(record, attr, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``2025-01-02T03:04:05.678Z WARNING tqd.pool: message [task_id=… queue=… name=…]``."""

    def __init__(self, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname
        if self.colour:
            level = f"\x1b[{_COLOURS.get(level, '0')}m{level:<7}\x1b[0m"
        else:
            level = f"{level:<7}"
        text = f"{_time(record.created)} {level} {record.name}: {record.getMessage()}"
        about = [f"{key}={getattr(record, attr)}" for attr, key in TASK_FIELDS
                 if getattr(record, attr, None) is not None]
        if about:
            text += f" [{' '.join(about)}]"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text.replace("\n", "\n    ")


def make_formatter(fmt: str, stream: Any = None) -> logging.Formatter:
    """The formatter for ``fmt`` (auto, text or json) writing to ``stream``."""
    if fmt == "json":
        return JsonFormatter()
    stream = stream or sys.stderr
    tty = fmt == "auto" and hasattr(stream, "isatty") and stream.isatty()
    return TextFormatter(colour=tty)


def setup_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure the root logger once for the process: ``level`` and below
    are dropped; every line goes to stderr in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(fmt, sys.stderr))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    # One line per request would swamp the log at thousands of requests per
    # second; /metrics counts requests instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
