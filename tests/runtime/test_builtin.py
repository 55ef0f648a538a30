"""The builtin handlers' handling of their payloads (direct calls, no pool)."""

from __future__ import annotations

import asyncio

import pytest

from tqd.models import Task
from tqd.runtime.handlers import TaskContext, TaskFailed
from tqd.runtime.handlers.builtin import Sleep


def _ctx(payload: bytes) -> TaskContext:
    return TaskContext(Task("00D241KPY6SC1CAMFM43", "tqd.sleep", "default", payload))


@pytest.mark.parametrize("payload", [b"null", b"{}", b'{"seconds": null}'])
async def test_sleep_without_seconds_sleeps_the_default(payload: bytes) -> None:
    """No seconds means one second: the call is still sleeping after 50 ms."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(Sleep().run(_ctx(payload)), timeout=0.05)


@pytest.mark.parametrize("payload", [b'{"seconds": -1}', b'{"seconds": "x"}', b'{"seconds": true}', b'"x"'])
async def test_sleep_refuses_what_is_not_a_duration(payload: bytes) -> None:
    with pytest.raises(TaskFailed) as failed:
        await Sleep().run(_ctx(payload))
    assert failed.value.retry is False and "seconds" in failed.value.message


async def test_sleep_accepts_a_bare_number() -> None:
    assert await Sleep().run(_ctx(b"0.001")) is None
