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

Failures are logged through ``log_failure``: one line with the exception's
type and message, and the traceback only in a DEBUG record after it (shown
with ``--log-level debug``). ``Throttle`` keeps a failure that comes once per
request during an outage to one line at its start and one a minute after.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from tqd.errors import TqdError, redact

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


def describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` for a log line, any URL password redacted."""
    text = exc.message if isinstance(exc, TqdError) else str(exc)
    return f"{type(exc).__name__}: {redact(text)}" if text else type(exc).__name__


def log_failure(logger: logging.Logger, msg: str, *args: Any, exc: BaseException | None = None,
                level: int = logging.ERROR, **kwargs: Any) -> None:
    """Log that something failed: ``msg % args (Type: message)`` as one line
    at ``level``, then the traceback in a DEBUG record of its own.

    ``exc`` defaults to the exception being handled; ``kwargs`` (``extra``)
    go to both records. A traceback is for whoever debugs the code, not for
    the operator reading the log (nor safe to show: it quotes locals and
    paths), so the normal log keeps one line per failure.
    """
    kwargs.setdefault("stacklevel", 2)  # the caller's line, not this one
    if exc is None:
        exc = sys.exc_info()[1]
    if exc is None:
        logger.log(level, msg, *args, **kwargs)
        return
    logger.log(level, msg + " (%s)", *args, describe(exc), **kwargs)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(msg + ": traceback", *args, exc_info=exc, **kwargs)


class Throttle:
    """Logs a run of like events as a line at its first, then at most one
    line per ``every`` seconds, counting those it held back.

    For what happens once per request while something is down: the log
    shows at once that it began and why, then once per ``every`` seconds
    that it goes on and how many it hit, however many requests come. When
    a period passes with none, the run is over; the next one is written at
    once again. Call it from the event loop (the summary is a timer on it).
    """

    def __init__(self, logger: logging.Logger, every: float = 60.0,
                 level: int = logging.WARNING) -> None:
        self.logger = logger
        self.every = every
        self.level = level
        self._timer: asyncio.TimerHandle | None = None
        self._held = 0
        self._last: tuple[str, tuple[Any, ...]] = ("", ())

    def log(self, msg: str, *args: Any) -> None:
        """Log ``msg % args`` now if no run is on, else count it for the summary."""
        if self._timer is not None:
            self._held += 1
            self._last = (msg, args)
            return
        self.logger.log(self.level, msg + "; more like it are counted, logged once per %gs",
                        *args, self.every)
        self._timer = asyncio.get_running_loop().call_later(self.every, self._summary)

    def _summary(self, final: bool = False) -> None:
        self._timer = None
        if not self._held:
            return  # a quiet period: the run is over
        msg, args = self._last
        self.logger.log(self.level, msg + "; %d like it in the last %gs", *args, self._held,
                        self.every)
        self._held = 0
        if not final:
            self._timer = asyncio.get_running_loop().call_later(self.every, self._summary)

    def close(self) -> None:
        """Write the summary of what is held back, and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._summary(final=True)


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
