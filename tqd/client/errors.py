"""What the clients raise."""

from __future__ import annotations


class ApiError(Exception):
    """The server answered with an error: ``status`` (HTTP), ``code`` (stable,
    e.g. ``stale_lease``, ``unknown_task``) and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(Exception):
    """No answer from the server at all (refused, reset, timed out)."""


def api_error(status: int, raw: bytes, reason: str) -> ApiError:
    """An ApiError from an error response body (the API's shape, or anything)."""
    import json

    try:
        detail = json.loads(raw)["error"]
        return ApiError(status, str(detail["code"]), str(detail["message"]))
    except (ValueError, KeyError, TypeError):
        text = raw.decode(errors="replace")[:200]
        return ApiError(status, "http_error", text or reason)
