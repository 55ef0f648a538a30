"""Request bodies of the API as typed structs, and their decoding.

Decoding checks types, ranges and unknown fields in one pass and raises
BadRequest with a message that names the field. Payloads are decoded and
re-encoded compactly, which also refuses anything a handler could not read
back (numbers beyond 64 bits, NaN, nesting deeper than the JSON codec allows).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from tqd.errors import BadRequest
from tqd.models import NAME_PATTERN, PRIORITY_MAX, PRIORITY_MIN, PROGRESS_MESSAGE_MAX, STATES

#: Longest delay or timeout accepted: 10 years in seconds.
MAX_SECONDS = 10 * 365 * 86400.0

Priority = Annotated[int, msgspec.Meta(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
Delay = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]
Attempts = Annotated[int, msgspec.Meta(ge=1, le=1000)]
IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# Names are checked by the handlers (with a message that says what a name
# is); the pattern here only describes them in the OpenAPI document.
TaskName = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": NAME_PATTERN})]
QueueName = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": NAME_PATTERN})]
GroupName = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": NAME_PATTERN})]
PurgeState = Annotated[
    str, msgspec.Meta(extra_json_schema={"enum": [s for s in STATES if s != "processing"]})
]


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are an error."""


class EnqueueBody(_Body):
    """``POST /v1/tasks``: one task to enqueue."""

    name: TaskName
    payload: Any = None
    queue: QueueName | None = None
    priority: Priority | None = None
    delay: Delay | None = None
    run_at: AwareDatetime | None = None
    max_attempts: Attempts | None = None
    timeout: Timeout | None = None
    idempotency_key: IdempotencyKey | None = None
    #: For task names with unique_for: the key twins share (default: a hash
    #: of the payload).
    unique_key: IdempotencyKey | None = None
    #: The fairness group (a tenant, say): a queue's lease takes turns
    #: among groups, and ``group_concurrency`` caps each.
    group: GroupName | None = None


class BatchBody(_Body):
    """``POST /v1/tasks/batch``: several tasks, stored all or none."""

    tasks: list[EnqueueBody]


class ProgressBody(_Body):
    """``POST /v1/tasks/{id}/progress``: how far a remote worker got with
    the task it holds under ``token``."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    progress: Annotated[float, msgspec.Meta(ge=0, le=1)]
    message: Annotated[str, msgspec.Meta(max_length=PROGRESS_MESSAGE_MAX)] = ""


#: Largest value of a count limit (beyond it a limit means nothing).
MAX_LIMIT = 1_000_000_000
LimitValue = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
RateInterval = Annotated[float, msgspec.Meta(gt=0, le=86400)]


class QueuePatchBody(_Body):
    """``PATCH /v1/queues/{q}``: change some of a queue's settings.

    A field left out keeps its stored value; null removes a limit
    (``rate_interval``: back to 1 second). ``paused`` pauses or resumes.
    """

    paused: bool | msgspec.UnsetType = msgspec.UNSET
    concurrency: LimitValue | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit: LimitValue | msgspec.UnsetType | None = msgspec.UNSET
    rate_interval: RateInterval | msgspec.UnsetType | None = msgspec.UNSET
    rate_burst: LimitValue | msgspec.UnsetType | None = msgspec.UNSET
    group_concurrency: LimitValue | msgspec.UnsetType | None = msgspec.UNSET


class PurgeBody(_Body):
    """``POST /v1/queues/{q}/purge``: which state to delete."""

    state: PurgeState


_AT = re.compile(r"^(.*?) - at `\$(.*)`$")


def _field_error(err: msgspec.MsgspecError) -> BadRequest:
    text = str(err)
    m = _AT.match(text)
    message, path = (m.group(1), m.group(2).lstrip(".")) if m else (text, "")
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", message)
    missing = re.fullmatch(r"Object missing required field `(.+)`", message)
    if unknown:
        path, message = ".".join(p for p in (path, unknown.group(1)) if p), "unknown field"
    elif missing:
        path, message = ".".join(p for p in (path, missing.group(1)) if p), "required field missing"
    else:
        message = message.removeprefix("JSON is malformed: ")
        message = message[0].lower() + message[1:]
    # ValidationError is a DecodeError too, but its JSON was well formed.
    if not isinstance(err, msgspec.ValidationError) and not path:
        return BadRequest(f"malformed JSON body: {message}")
    return BadRequest(f"{path or 'body'}: {message}")


def decode(body: bytes, kind: type, max_depth: int | None = None) -> Any:
    """Decode a JSON request body into ``kind``; BadRequest names what is wrong
    (and ``max_depth``, the configured nesting limit, when the body is too deep
    for the decoder itself)."""
    if not body.strip():
        raise BadRequest("body: a JSON object is required")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.MsgspecError as err:
        raise _field_error(err) from None
    except UnicodeDecodeError:
        raise BadRequest("malformed JSON body: not valid UTF-8") from None
    except RecursionError:
        if max_depth is not None:
            raise BadRequest(
                f"body: nested deeper than {max_depth} levels (the limit, [api] max_depth)"
            ) from None
        raise BadRequest("malformed JSON body: nested too deeply") from None


def encode_payload(payload: Any, field: str, where: str = "") -> bytes:
    """Compact JSON for a payload; BadRequest naming ``where`` + ``field``
    when a handler could not read it back. (The name is built only then:
    this runs for every task of a batch.)"""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError as err:
        text = str(err)
        if "Recursion limit" in text:
            text = "nested too deeply (at most 254 levels)"
        elif "64-bit" in text:
            text = "an integer is outside the 64-bit range"
        raise BadRequest(f"{where}{field}: {text}") from None


# -- the pull API of remote workers -------------------------------------------

LeaseCount = Annotated[int, msgspec.Meta(ge=1, le=1000)]
WaitSeconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
LeaseToken = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
WorkerName = Annotated[str, msgspec.Meta(pattern=r"^[\x21-\x7e]{1,128}$")]
ErrorMessage = Annotated[str, msgspec.Meta(max_length=4000)]


class LeaseBody(_Body):
    """``POST /v1/queues/{q}/lease``: take up to ``max`` pending tasks.

    ``visibility_timeout`` replaces the tasks' own for this lease;
    ``wait`` long-polls up to that many seconds when nothing is pending;
    ``worker`` names the caller in the tasks' ``worker`` field.
    """

    max: LeaseCount = 1
    visibility_timeout: Timeout | None = None
    wait: WaitSeconds = 0.0
    worker: WorkerName | None = None


class HeartbeatBody(_Body):
    """``POST /v1/tasks/{id}/heartbeat``: keep a lease; ``extend`` seconds
    from now (default: the task's visibility timeout)."""

    token: LeaseToken
    extend: Timeout | None = None


class CompleteBody(_Body):
    """``POST /v1/tasks/{id}/complete``: the task succeeded with ``result``."""

    token: LeaseToken
    result: Any = None


class FailBody(_Body):
    """``POST /v1/tasks/{id}/fail``: the attempt failed.

    ``retry`` false sends the task to the dead letters at once; otherwise it
    is tried again while attempts remain, after ``delay`` seconds (default:
    the task's backoff).
    """

    token: LeaseToken
    error: ErrorMessage = "the remote worker reported a failure"
    retry: bool = True
    delay: Delay | None = None


class SettleItem(_Body):
    """One outcome of ``POST /v1/tasks/settle``: ``complete`` with
    ``result``; ``fail`` with ``error``, ``retry`` and ``delay``; or
    ``release``: hand the task back untried (the attempt does not count),
    as a worker that stops does with tasks it did not run."""

    id: str
    token: LeaseToken
    outcome: Literal["complete", "fail", "release"]
    result: Any = None
    error: ErrorMessage = "the remote worker reported a failure"
    retry: bool = True
    delay: Delay | None = None


class SettleBody(_Body):
    """``POST /v1/tasks/settle``: several outcomes in one request, each
    accepted or refused on its own."""

    outcomes: list[SettleItem]
