"""Limits on what a client may send, each answered with its own clear error.

- body size: 413 before the body is read (``[api] max_body_size``; in app.py)
- body read time: 408 when the body does not arrive within ``[api] body_timeout``
- header read time (slowloris): a connection that has not sent a complete
  request head within ``[api] header_timeout`` of opening (or of its previous
  answer) is closed; aiohttp's keep-alive timer does it (see :func:`server_settings`)
- header size: aiohttp refuses a line over 8190 bytes or more than 128
  headers with 400 (plain text: the request never reached tqd's routes)
- content type: a body must be declared JSON, else 415 (a browser can send
  ``text/plain`` or form bodies to any site without asking first)
- payload nesting: deeper than ``[api] max_depth`` levels is 400 naming the limit
- names in paths and filters: a ``{queue}`` or ``{id}`` that cannot be one is 400
- batch size: 400 (``[api] max_batch``; in tasks.py)

aiohttp logs a malformed request with a traceback at ERROR; that is noise a
client can cause at will, so :func:`quiet_protocol_errors` turns it into one
line at INFO.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from tqd.config import Config
from tqd.errors import BadRequest, UnsupportedMediaType
from tqd.models import valid_name

#: What a task id in a path may look like (tqd makes 20 base32 characters).
_TASK_ID = re.compile(r"[0-9A-Za-z]{1,64}")
_JSON_TYPES = ("application/json",)


def server_settings(config: Config) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` that enforce the header read time.

    aiohttp closes a connection whose keep-alive timer fires while it still
    waits for a complete request head; the timer starts when the connection
    opens and again after each answer, and bytes arriving do not restart it.
    So ``keepalive_timeout`` bounds both the time to send a request head and
    how long an idle keep-alive connection stays open.
    """
    return {"keepalive_timeout": config.api.header_timeout}


def check_content_type(request: web.Request) -> None:
    """415 unless a request with a body declares it JSON (or declares nothing)."""
    declared = request.headers.get("Content-Type")
    if declared is None:
        return
    kind = request.content_type
    if kind in _JSON_TYPES or (kind.startswith("application/") and kind.endswith("+json")):
        return
    raise UnsupportedMediaType(
        f"Content-Type: expected application/json, got {kind!r} "
        "(with curl: -H 'Content-Type: application/json')"
    )


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` (decoded JSON) nests containers deeper than ``limit``.

    Iterative, so a hostile payload cannot exhaust the stack of the check itself.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def check_payload_depth(raw: bytes, payloads: Iterable[tuple[str, Any]], limit: int) -> None:
    """400 naming the field when a payload nests deeper than ``limit`` levels.

    ``raw`` is the request body: when it holds no more opening brackets than
    the limit, no payload in it can be deeper, and nothing is walked (the
    common case costs two scans in C).
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    for where, payload in payloads:
        if depth_exceeds(payload, limit):
            raise BadRequest(
                f"{where}: nested deeper than {limit} levels (the limit, [api] max_depth)"
            )


def too_deep_to_decode(limit: int) -> BadRequest:
    """The error for a body too deep for the JSON decoder itself."""
    return BadRequest(f"body: nested deeper than {limit} levels (the limit, [api] max_depth)")


def _path_problem(request: web.Request) -> str | None:
    info = request.match_info
    queue = info.get("queue")
    if queue is not None and not valid_name(queue):
        # the same words as the queue routes' own check
        return "queue: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
    task_id = info.get("id")
    if task_id is not None and not _TASK_ID.fullmatch(task_id):
        return f"id: {_shown(task_id)} is not a task id (letters and digits)"
    for name in ("queue", "name"):
        value = request.query.get(name)
        if value and not valid_name(value):
            return f"{name}: {_shown(value)} is not a valid {'queue' if name == 'queue' else 'task'} name"
    return None


def _shown(value: str) -> str:
    """A client's value, quoted and cut short, for an error message."""
    return repr(value if len(value) <= 64 else value[:64] + "…")


@web.middleware
async def input_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """400 for names and ids in the path or filters that cannot be valid."""
    problem = _path_problem(request)
    if problem is not None:
        raise BadRequest(problem)
    return await handler(request)


class _ProtocolErrorFilter(logging.Filter):
    """One INFO line instead of a traceback for requests aiohttp could not parse."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            first = str(exc.message).strip().splitlines()[0] if exc.message else type(exc).__name__
            record.msg = "refused a malformed request (%d): %s"
            record.args = (exc.code, first[:200])
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger("aiohttp.server").isEnabledFor(logging.INFO)
        return True


_FILTER = _ProtocolErrorFilter()


def quiet_protocol_errors() -> None:
    """Install the filter on aiohttp's server logger (once; idempotent)."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
