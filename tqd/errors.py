"""Errors that tqd reports to people and programs.

Every error has a stable machine-readable ``code`` (part of the API contract)
and the HTTP status the API answers it with. Messages name what is wrong and
never carry a traceback or a secret.
"""

from __future__ import annotations

import re

#: The user and password part of a URL (``scheme://user:password@``); the
#: password may hold anything but blanks and "@" (unescaped "/" included).
_URL_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s@]+@")


def safe_url(url: str) -> str:
    """``url`` with its user and password shown as ``***``, for logs and
    output (a password may hold "@": the host follows the last one)."""
    scheme, sep, rest = url.partition("://")
    _, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{host}" if sep else url


def redact(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by
    ``***`` (as ``safe_url`` shows one URL), for messages built from a
    driver's words that could quote a connection string."""
    return _URL_USERINFO.sub(r"\1***@", text) if "@" in text else text


class TqdError(Exception):
    """Root of every error tqd raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        """The body the API answers with: ``{"error": {"code", "message"}}``."""
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(TqdError):
    """The request is malformed or a value is out of range (names the field)."""

    code = "bad_request"
    status = 400


class Unauthorized(TqdError):
    """No token, or a token that matches none configured."""

    code = "unauthorized"
    status = 401


class Forbidden(TqdError):
    """The token's scope is too low, or a browser page of another origin acts."""

    code = "forbidden"
    status = 403


class RequestTimeout(TqdError):
    """The request body did not arrive within ``[api] body_timeout``."""

    code = "request_timeout"
    status = 408


class UnsupportedMediaType(TqdError):
    """A request body that is not declared as JSON."""

    code = "unsupported_media_type"
    status = 415


class NotFound(TqdError):
    """No such task, queue or route."""

    code = "not_found"
    status = 404


class Conflict(TqdError):
    """The operation does not fit the task's current state."""

    code = "conflict"
    status = 409


class LimitsChanged(Conflict):
    """A queue's limits were not what a compare-and-set expected: another
    writer changed them between the read and the write."""

    code = "limits_changed"


class StaleLease(Conflict):
    """A settle or extend named a lease token that is no longer the task's."""

    code = "stale_lease"


class PayloadTooLarge(TqdError):
    """The request body is over the configured limit."""

    code = "payload_too_large"
    status = 413


class UnknownTask(TqdError):
    """The task name has no handler configured."""

    code = "unknown_task"
    status = 422


class StorageUnavailable(TqdError):
    """The store does not answer; the request may be tried again.

    ``raised`` counts how many were made in this process, wherever they were
    raised (tqd_storage_errors_total): every backend reports an unusable
    store with one of these, so counting here misses none.
    """

    code = "storage_unavailable"
    status = 503
    raised = 0

    def __init__(self, message: str) -> None:
        # The message quotes the driver, and goes to clients and the log.
        super().__init__(redact(message))
        StorageUnavailable.raised += 1


class ShuttingDown(TqdError):
    """The daemon is draining and takes no new work."""

    code = "shutting_down"
    status = 503


class ConfigError(TqdError):
    """The configuration is invalid: names the file, the key and what is wrong."""

    code = "config_error"
    status = 500
