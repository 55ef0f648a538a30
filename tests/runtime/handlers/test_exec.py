"""The exec handler with real processes: results, exit codes, stderr, the
environment, start failures, and stopping whole process trees."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.procs import read_pids, running
from tests.helpers.waiting import eventually
from tqd.config import ExecHandler
from tqd.errors import ConfigError
from tqd.ids import IdGenerator
from tqd.models import Task
from tqd.runtime.handlers.base import RawJSON, TaskContext, TaskFailed
from tqd.runtime.handlers.exec import ExecCommand

_ids = IdGenerator()


def context(payload: bytes = b"null", attempts: int = 0) -> TaskContext:
    return TaskContext(Task(id=_ids.new(), name="job", queue="jobs", payload=payload,
                            attempts=attempts))


def command(*argv: str, **options: Any) -> ExecCommand:
    return ExecCommand(ExecHandler(command=list(argv), **options), "tasks.job.handler")


def sh(script: str, **options: Any) -> ExecCommand:
    return command("/bin/sh", "-c", script, **options)


async def wait_for_pids(path: Path, n: int) -> list[int]:
    return await eventually(lambda: len(read_pids(path)) >= n and read_pids(path),
                            message=f"{n} pids in {path}")


async def wait_gone(pids: list[int]) -> None:
    await eventually(lambda: not any(running(p) for p in pids), message=f"{pids} gone")


# -- results ------------------------------------------------------------------


async def test_stdout_that_is_json_is_the_result():
    result = await sh('cat >/dev/null; echo \'{"ok": true, "n": [1, 2]}\'').run(context())
    assert result == RawJSON(b'{"ok":true,"n":[1,2]}')


async def test_the_payload_arrives_on_stdin():
    result = await command("/bin/cat").run(context(b'{"hello":"world","n":3}'))
    assert result == RawJSON(b'{"hello":"world","n":3}')


async def test_a_large_payload_is_fed_whole():
    payload = b'"' + b"x" * 300_000 + b'"'
    result = await sh("wc -c").run(context(payload))
    assert result == RawJSON(str(len(payload)).encode())


async def test_stdout_that_is_not_json_is_text():
    assert await sh("echo hello world").run(context()) == "hello world"
    assert await sh("printf 'two\\nlines\\n'").run(context()) == "two\nlines"


async def test_empty_stdout_is_null():
    assert await command("/bin/true").run(context()) is None


async def test_a_command_that_ignores_stdin_still_succeeds():
    payload = b'"' + b"y" * 500_000 + b'"'
    assert await sh("echo done").run(context(payload)) == "done"


async def test_stdout_over_max_output_stops_the_command_and_fails():
    with pytest.raises(TaskFailed) as caught:
        await command("/usr/bin/yes", max_output=1000).run(context())
    assert caught.value.kind == "output"
    assert caught.value.retry is False
    assert "max_output (1000 bytes)" in caught.value.message


# -- exit codes and stderr ------------------------------------------------------


async def test_exit_75_asks_for_a_retry():
    with pytest.raises(TaskFailed) as caught:
        await sh("echo busy >&2; exit 75").run(context())
    assert caught.value.retry is True
    assert caught.value.kind == "tempfail"
    assert "exit 75" in caught.value.message
    assert "busy" in caught.value.message


async def test_another_exit_code_fails_with_the_code_and_the_end_of_stderr():
    script = "i=0; while [ $i -lt 300 ]; do echo line$i >&2; i=$((i+1)); done; echo LAST >&2; exit 3"
    with pytest.raises(TaskFailed) as caught:
        await sh(script, stderr_tail=200).run(context())
    err = caught.value
    assert err.kind == "exit"
    assert err.retry is True
    assert err.message.startswith("exit 3; stderr: ")
    assert err.message.endswith("LAST")
    assert "line0\n" not in err.message  # only the tail is kept
    assert len(err.message) < 260


async def test_configured_exit_codes_do_not_retry():
    handler = sh("exit 65", no_retry_exit_codes=[65])
    with pytest.raises(TaskFailed) as caught:
        await handler.run(context())
    assert caught.value.retry is False
    with pytest.raises(TaskFailed) as caught:
        await sh("exit 66", no_retry_exit_codes=[65]).run(context())
    assert caught.value.retry is True


async def test_a_command_killed_by_a_signal_says_which():
    with pytest.raises(TaskFailed) as caught:
        await sh("kill -SEGV $$").run(context())
    assert caught.value.message.startswith("killed by SIGSEGV")
    assert caught.value.retry is True


# -- environment, cwd ------------------------------------------------------------


async def test_the_environment_is_small_and_explicit(monkeypatch):
    monkeypatch.setenv("DAEMON_SECRET", "hunter2")
    monkeypatch.setenv("SHARED_ONE", "passed")
    handler = command("/usr/bin/env", env={"MINE": "x y"}, pass_env=["PATH", "SHARED_ONE"])
    ctx = context(attempts=2)
    out = await handler.run(ctx)
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env == {
        "PATH": os.environ["PATH"],
        "SHARED_ONE": "passed",
        "MINE": "x y",
        "TQD_TASK_ID": ctx.task_id,
        "TQD_TASK_NAME": "job",
        "TQD_QUEUE": "jobs",
        "TQD_ATTEMPT": "3",
    }


async def test_cwd_is_where_the_command_runs(tmp_path):
    assert await command("/bin/pwd", cwd=str(tmp_path)).run(context()) == str(tmp_path)


async def test_a_bare_program_name_is_found_in_path():
    assert await command("echo", "hi").run(context()) == "hi"


async def test_argv_is_not_interpreted_by_a_shell():
    result = await command("/bin/echo", "$HOME; rm -rf /", "`id`").run(context())
    assert result == "$HOME; rm -rf / `id`"


# -- start failures ---------------------------------------------------------------


def test_a_missing_program_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"tasks\.job\.handler\.command: program '/nonexistent/tool' does not exist"):
        command("/nonexistent/tool")
    with pytest.raises(ConfigError, match="not found in PATH"):
        command("surely-no-such-program-here")
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="is not an executable file"):
        command(str(plain))
    with pytest.raises(ConfigError, match=r"\.cwd: .* is not a directory"):
        command("/bin/true", cwd=str(tmp_path / "nope"))


async def test_a_program_that_vanished_fails_the_task_clearly(tmp_path):
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho ok\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    handler = command(str(script))
    assert await handler.run(context()) == "ok"
    script.unlink()
    with pytest.raises(TaskFailed) as caught:
        await handler.run(context())
    assert caught.value.kind == "start"
    assert caught.value.retry is False
    assert caught.value.message == f"cannot start {str(script)!r}: No such file or directory"


# -- stopping process trees ------------------------------------------------------


TREE = "echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; wait"
STUBBORN = "echo $$ >> {pids}; (trap '' TERM; exec sleep 300) & echo $! >> {pids}; wait"


async def test_a_timeout_kills_the_whole_process_tree(tmp_path):
    pids_file = tmp_path / "pids"
    handler = sh(TREE.format(pids=pids_file), kill_grace=2.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await handler.run(context())
    pids = read_pids(pids_file)
    assert len(pids) == 2
    await wait_gone(pids)


async def test_a_child_that_ignores_sigterm_gets_sigkill_after_the_grace(tmp_path):
    pids_file = tmp_path / "pids"
    handler = sh(STUBBORN.format(pids=pids_file), kill_grace=0.3)
    job = asyncio.create_task(handler.run(context()))
    pids = await wait_for_pids(pids_file, 2)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    # run() returns only after the grace and the SIGKILL: nothing is left.
    assert not any(running(p) for p in pids)


async def test_cancel_of_a_running_command_stops_it(tmp_path):
    pids_file = tmp_path / "pids"
    job = asyncio.create_task(sh(TREE.format(pids=pids_file)).run(context()))
    pids = await wait_for_pids(pids_file, 2)
    assert all(running(p) for p in pids)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await wait_gone(pids)


async def test_what_a_command_leaves_behind_is_stopped_when_it_exits(tmp_path):
    result = await sh("sleep 300 & echo $!", kill_grace=1.0).run(context())
    pid = int(result)
    await wait_gone([pid])


async def test_many_commands_run_at_once():
    handler = sh('cat; echo " done"')
    results = await asyncio.gather(*(handler.run(context(f'"{i}"'.encode())) for i in range(40)))
    assert results == [f'"{i}" done' for i in range(40)]


def _processes_with_args(*argv: str) -> list[int]:
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted and running(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_a_cancel_while_the_spawn_waits_for_a_thread_leaves_no_process():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    marker = f"{os.getpid()}.{id(object())}"  # a unique sleep argument
    spawner = ThreadPoolExecutor(1)
    gate = threading.Event()
    spawner.submit(gate.wait)  # the only thread is busy: the spawn queues behind it
    try:
        handler = ExecCommand(ExecHandler(command=["sleep", marker]), "x", spawner)
        job = asyncio.create_task(handler.run(context()))
        await asyncio.sleep(0.05)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        gate.set()  # now the thread starts the process of the cancelled task
        spawned = spawner.submit(lambda: None)
        await asyncio.wrap_future(spawned)
        await eventually(lambda: not _processes_with_args("/usr/bin/sleep", marker)
                         and not _processes_with_args("/bin/sleep", marker),
                         message="the late process is killed")
    finally:
        gate.set()
        spawner.shutdown()
