"""Progress from exec commands: ``TQD-PROGRESS <fraction> <message>`` lines on
stderr, with real processes."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tqd.config import ExecHandler
from tqd.ids import IdGenerator
from tqd.models import Task
from tqd.runtime.handlers.base import TaskContext, TaskFailed
from tqd.runtime.handlers.exec import ExecCommand, parse_progress

_ids = IdGenerator()


class Sink:
    """Collects progress reports as the pool would receive them."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.seen: list[tuple[float, str]] = []

    def task_progress(self, task: Task, fraction: float, message: str) -> None:
        self.seen.append((fraction, message))


def reporting_context() -> tuple[TaskContext, list[tuple[float, str]]]:
    sink = Sink()
    return TaskContext(Task(id=_ids.new(), name="job", queue="jobs"), sink), sink.seen


def sh(script: str) -> ExecCommand:
    return ExecCommand(ExecHandler(command=["/bin/sh", "-c", script]), "tasks.job.handler")


async def test_progress_lines_are_reported_in_order():
    ctx, seen = reporting_context()
    script = (
        "echo 'TQD-PROGRESS 0.25 reading input' >&2; "
        "echo 'TQD-PROGRESS 0.5' >&2; "
        "printf 'TQD-PROGRESS 1 all done, ok\\n' >&2; "
        "echo result"
    )
    assert await sh(script).run(ctx) == "result"
    assert seen == [(0.25, "reading input"), (0.5, ""), (1.0, "all done, ok")]


async def test_progress_lines_stay_out_of_the_error_message():
    ctx, seen = reporting_context()
    script = (
        "echo 'TQD-PROGRESS 0.1 started' >&2; echo 'real trouble' >&2; "
        "printf 'TQD-PROGRESS 0.2 last, without a line break' >&2; exit 3"
    )
    with pytest.raises(TaskFailed) as failed:
        await sh(script).run(ctx)
    assert failed.value.message == "exit 3; stderr: real trouble"
    assert seen == [(0.1, "started"), (0.2, "last, without a line break")]


async def test_malformed_progress_lines_are_ordinary_stderr():
    ctx, seen = reporting_context()
    script = (
        "echo 'TQD-PROGRESS lots of it' >&2; echo 'TQD-PROGRESS 1.5 too much' >&2; "
        "echo 'TQD-PROGRESS' >&2; exit 1"
    )
    with pytest.raises(TaskFailed) as failed:
        await sh(script).run(ctx)
    assert seen == []
    assert "TQD-PROGRESS lots of it" in failed.value.message
    assert "TQD-PROGRESS 1.5 too much" in failed.value.message


async def test_a_chatty_command_is_read_whole():
    """Many reports in big writes, split anywhere by the pipe."""
    ctx, seen = reporting_context()
    script = (
        "i=0; while [ $i -lt 2000 ]; do echo \"TQD-PROGRESS 0.$i step $i\" >&2; "
        "i=$((i+1)); done; echo 'TQD-PROGRESS 1 done' >&2"
    )
    await sh(script).run(ctx)
    assert len(seen) == 2001
    assert seen[-1] == (1.0, "done")
    assert seen[7] == (0.7, "step 7")


@pytest.mark.parametrize(("line", "want"), [
    (b"TQD-PROGRESS 0.5 half\n", (0.5, "half")),
    (b"TQD-PROGRESS 0 \r\n", (0.0, "")),
    (b"TQD-PROGRESS 1e-1 tenth\n", (0.1, "tenth")),
    (b"TQD-PROGRESS nan x\n", None),
    (b"TQD-PROGRESS -0.1 x\n", None),
    (b"tqd-progress 0.5 x\n", None),
    (b" TQD-PROGRESS 0.5 x\n", None),
    (b"TQD-PROGRESS 0.5 caf\xc3\xa9 \xff\n", (0.5, "caf\u00e9 \ufffd")),
])
def test_parse_progress(line, want):
    assert parse_progress(line) == want
