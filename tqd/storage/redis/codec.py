"""How a task is laid out in its Redis hash, and the change-event messages.

A task hash uses one-letter field names and omits every field that is None
(and ``a``/``r`` while zero), so a queued task with an empty payload is a
small listpack. The id and the queue are in the key, not in the hash.

====  ==================  ====  ==================
n     name                u     run_at
p     payload (JSON)      g     started_at
r     priority            f     finished_at
s     state               o     result (JSON)
a     attempts            e     errors (JSON list)
m     max_attempts        en    number of errors
b     attempt_budget      k     idempotency_key
c     created_at          x     timeout
v     visibility_timeout  w     worker
l     lease_token         z     lease_expires_at
uk    unique_key          uu    unique_until
pg    progress (JSON)      gr    group
====  ==================  ====  ==================

``gr`` is written only for a task with a group: an ungrouped task is no
bigger for it. The empty string is no group (the lease treats it as none).

Floats are written with ``repr`` (Python) or ``%.17g`` (Lua), both exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tqd.models import Change, QueueChange, Task


def _num(value: float) -> bytes:
    return repr(float(value)).encode()


def task_fields(t: Task) -> list[bytes]:
    """The hash of a new task as a flat field/value list."""
    out: list[bytes] = [
        b"n", t.name.encode(),
        b"p", t.payload,
        b"s", t.state.encode(),
        b"m", str(t.max_attempts).encode(),
        b"b", str(t.attempt_budget).encode(),
        b"c", _num(t.created_at),
        b"v", _num(t.visibility_timeout),
    ]  # fmt: skip
    if t.priority:
        out += (b"r", str(t.priority).encode())
    if t.attempts:
        out += (b"a", str(t.attempts).encode())
    for field, value in (
        (b"u", t.run_at), (b"g", t.started_at), (b"f", t.finished_at),
        (b"x", t.timeout), (b"z", t.lease_expires_at), (b"uu", t.unique_until),
    ):  # fmt: skip
        if value is not None:
            out += (field, _num(value))
    for field, text in (
        (b"k", t.idempotency_key), (b"w", t.worker), (b"l", t.lease_token), (b"uk", t.unique_key),
        (b"gr", t.group or None),
    ):  # fmt: skip
        if text is not None:
            out += (field, text.encode())
    if t.result is not None:
        out += (b"o", t.result)
    if t.progress is not None:
        out += (b"pg", t.progress)
    if t.errors:
        out += (b"e", orjson.dumps(t.errors), b"en", str(len(t.errors)).encode())
    return out


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def decode_task(task_id: str, queue: str, f: dict[bytes, bytes]) -> Task:
    """A Task from the fields of its hash."""
    errors = f.get(b"e")
    return Task(
        id=task_id,
        name=f[b"n"].decode(),
        queue=queue,
        payload=f.get(b"p", b"null"),
        priority=int(f.get(b"r", 0)),
        state=f[b"s"].decode(),
        attempts=int(f.get(b"a", 0)),
        max_attempts=int(f[b"m"]),
        attempt_budget=int(f[b"b"]),
        created_at=float(f[b"c"]),
        run_at=_float(f.get(b"u")),
        started_at=_float(f.get(b"g")),
        finished_at=_float(f.get(b"f")),
        result=f.get(b"o"),
        errors=orjson.loads(errors) if errors else [],
        idempotency_key=_text(f.get(b"k")),
        timeout=_float(f.get(b"x")),
        visibility_timeout=float(f[b"v"]),
        worker=_text(f.get(b"w")),
        lease_token=_text(f.get(b"l")),
        lease_expires_at=_float(f.get(b"z")),
        unique_key=_text(f.get(b"uk")),
        unique_until=_float(f.get(b"uu")),
        progress=f.get(b"pg"),
        group=_text(f.get(b"gr")),
    )


def pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    """``[k1, v1, k2, v2, …]`` (as a script returns HGETALL) as a dict."""
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def decode_event(message: bytes | str, op: str = "") -> tuple[str, list[Change | QueueChange]]:
    """The origin and the changes of one event message (see scripts.py).

    ``op`` is the operation that made them when this process ran the script
    (see ``Change.op``); empty for a message heard from another process.
    """
    if isinstance(message, str):
        message = message.encode()
    origin, _, text = message.partition(b" ")
    body = orjson.loads(text)
    queue = body["q"]
    flat = body["c"] or []  # Lua's cjson encodes an empty table as {}
    out: list[Change | QueueChange] = [
        Change(flat[i], queue, flat[i + 1], flat[i + 2], op) for i in range(0, len(flat), 3)
    ]
    if body.get("e"):
        out.append(QueueChange(queue, body["e"]))
    return origin.decode(), out
