"""The ``exec`` kind: run a configured command with the task's payload on stdin.

The argv comes from configuration only and is executed directly, never
through a shell. The command runs in a session (and process group) of its
own with a small, explicit environment: the variables named in ``pass_env``,
then ``env``, then ``TQD_TASK_ID``, ``TQD_TASK_NAME``, ``TQD_QUEUE`` and
``TQD_ATTEMPT``. Nothing else of the daemon's environment (which may hold
tokens or storage passwords) reaches it.

A line ``TQD-PROGRESS <fraction> <message>`` on stderr (fraction from 0 to
1) reports the task's progress; such lines are not kept with the rest of
stderr, and a malformed one is kept as an ordinary line.

Exit 0 completes the task with stdout as the result (JSON when it parses,
else text); exit 75 (EX_TEMPFAIL) asks for another attempt; any other exit
fails the attempt with the exit code and the end of stderr, and retries
while attempts remain. On timeout, cancel or shutdown the whole process
group gets SIGTERM, then SIGKILL after ``kill_grace``. When the command
itself exits, anything it left running in its process group is stopped the
same way, so no orphan outlives its task (a process that leaves the group
on purpose, with setsid, is beyond reach).

Processes are started with ``subprocess.Popen`` (vfork on Linux) from a few
threads, and watched with a pidfd on the event loop, rather than with the
loop's own subprocess support: uvloop forks, which costs several times more
per task, and a spawn waits for the child to exec, which on a busy machine
would stall the loop (the threads wait instead, several at once).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import orjson

from tqd.config import ExecHandler
from tqd.errors import ConfigError
from tqd.runtime.handlers.base import RawJSON, TaskContext, TaskFailed

#: sysexits.h: "temporary failure; the user is invited to retry".
EX_TEMPFAIL = 75
#: Start failures that another attempt would meet again.
_CANNOT_START = frozenset({errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR, errno.EISDIR})
_READ_SIZE = 65536
#: Starts a progress line on stderr (see the module docstring).
PROGRESS_PREFIX = b"TQD-PROGRESS "
#: Longest stderr line looked at as a possible progress line.
_LINE_MAX = 4096

Progress = Callable[[float, str], None]


def parse_progress(line: bytes) -> tuple[float, str] | None:
    """``(fraction, message)`` of a ``TQD-PROGRESS`` line, or None when the
    line is not one (or its fraction is not a number from 0 to 1)."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    parts = line[len(PROGRESS_PREFIX):].strip().split(None, 1)
    if not parts:
        return None
    try:
        fraction = float(parts[0])
    except ValueError:
        return None
    if not 0.0 <= fraction <= 1.0:  # also refuses NaN
        return None
    message = parts[1].decode("utf-8", "replace").strip() if len(parts) > 1 else ""
    return fraction, message


def resolve_program(spec: ExecHandler, env: dict[str, str], where: str) -> str:
    """The absolute path of the command's program; ConfigError when it is
    missing or not executable (so ``tqd config check`` reports it).

    A bare name is looked up in the command's own PATH; a relative path
    with a slash is relative to ``cwd``.
    """
    program = spec.command[0]
    if spec.cwd is not None and not os.path.isdir(spec.cwd):
        raise ConfigError(f"{where}.cwd: {spec.cwd!r} is not a directory")
    if "/" not in program:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise ConfigError(
                f"{where}.command: program {program!r} not found in PATH "
                f"{env.get('PATH', os.defpath)!r}"
            )
        return os.path.abspath(found)
    path = os.path.join(spec.cwd or os.getcwd(), program)
    if not os.path.exists(path):
        raise ConfigError(f"{where}.command: program {program!r} does not exist")
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise ConfigError(f"{where}.command: {program!r} is not an executable file")
    return os.path.abspath(path)


def command_env(spec: ExecHandler, source: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The variables every run of the command gets (before the TQD_* ones)."""
    env = {name: source[name] for name in spec.pass_env if name in source}
    env.update(spec.env)
    return env


#: Threads that start processes; more start faster on a busy machine.
SPAWN_THREADS = 4


def spawn_executor() -> ThreadPoolExecutor:
    """The threads exec commands are started from (shared by every exec task)."""
    return ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="tqd-spawn")


class ExecCommand:
    """Runs one configured command per task (see the module docstring).

    ``spawner`` starts the processes; without one the command gets threads
    of its own, shut down by ``close``.
    """

    def __init__(self, spec: ExecHandler, where: str, spawner: Executor | None = None) -> None:
        self._own_spawner = spawner is None
        self._spawner = spawner or spawn_executor()
        self._env = command_env(spec, os.environ)
        self._argv = [resolve_program(spec, self._env, where), *spec.command[1:]]
        self._cwd = spec.cwd
        self._max_output = spec.max_output
        self._tail = spec.stderr_tail
        self._grace = spec.kill_grace
        self._no_retry = frozenset(spec.no_retry_exit_codes)

    async def run(self, ctx: TaskContext) -> Any:
        env = dict(self._env)
        env["TQD_TASK_ID"] = ctx.task_id
        env["TQD_TASK_NAME"] = ctx.name
        env["TQD_QUEUE"] = ctx.queue
        env["TQD_ATTEMPT"] = str(ctx.attempt)
        loop = asyncio.get_running_loop()
        spawning = loop.run_in_executor(self._spawner, _spawn, self._argv, self._cwd, env)
        try:
            proc = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # The thread starts the process anyway: stop it as soon as it exists.
            spawning.add_done_callback(_abandon)
            raise
        except OSError as err:
            raise TaskFailed(
                f"cannot start {self._argv[0]!r}: {err.strerror or err}",
                retry=err.errno not in _CANNOT_START,
                kind="start",
            ) from None
        run = _Run(proc, loop, self._max_output, ctx.progress)
        try:
            code = await run.finish(ctx.raw_payload, self._grace)
        except BaseException:
            # Timeout, cancel, lost lease or shutdown: the whole group goes.
            await run.stop(self._grace)
            raise
        finally:
            run.close()
        return self._outcome(code, run)

    def _outcome(self, code: int, run: _Run) -> Any:
        if run.overflow:
            raise TaskFailed(
                f"stdout was larger than max_output ({self._max_output} bytes); "
                "the command was stopped",
                retry=False,
                kind="output",
            )
        if code == 0:
            return decode_output(bytes(run.out))
        tail = _tail(run.err, self._tail)
        said = f"; stderr: {tail}" if tail else ""
        if code == EX_TEMPFAIL:
            raise TaskFailed(f"exit 75 (EX_TEMPFAIL): the command asked to be tried again{said}",
                             kind="tempfail")
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            raise TaskFailed(f"killed by {name}{said}", kind="signal")
        raise TaskFailed(f"exit {code}{said}", retry=code not in self._no_retry, kind="exit")

    async def close(self) -> None:
        if self._own_spawner:
            self._spawner.shutdown(wait=False)


def _abandon(spawning: asyncio.Future) -> None:
    """Kill what a spawn started after its task was cancelled, and reap it."""
    if spawning.cancelled() or spawning.exception() is not None:
        return
    proc: subprocess.Popen = spawning.result()
    _signal_group(proc.pid, signal.SIGKILL)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    threading.Thread(target=proc.wait, name="tqd-reap", daemon=True).start()


def _spawn(argv: list[str], cwd: str | None, env: dict[str, str]) -> subprocess.Popen:
    """Start the command in a new session; returns once it was executed (a
    vfork on Linux: the loop waits well under a millisecond)."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
        close_fds=True,
    )


#: The longest stop() waits, after SIGKILL, for the group to end; returns
#: as soon as it has (usually within milliseconds).
KILLED_GONE_WITHIN = 5.0


def decode_output(out: bytes) -> Any:
    """stdout as a result: null when empty, JSON when it parses, else text
    (without its final line break)."""
    if not out.strip():
        return None
    try:
        return RawJSON(orjson.dumps(orjson.loads(out)))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        text = out.decode("utf-8", "replace")
        return text[:-1] if text.endswith("\n") else text


def _tail(err: bytearray, size: int) -> str:
    if not size:
        return ""
    return bytes(err[-size:]).decode("utf-8", "replace").strip()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its user: it is there, out of reach
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies do not count).

    An orphan that exited stays a zombie in the group until its new parent
    reaps it, and some init processes (in containers) never do; signal 0
    would count it as alive forever. On Linux /proc tells them apart.
    """
    if not _signal_group(pgid, 0):
        return False
    try:
        entries = os.scandir("/proc")
    except OSError:
        return True
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            # fields: state, ppid, pgrp, ...
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False


class _Run:
    """One running command: its pipes and its exit, watched on the event loop."""

    def __init__(
        self, proc: subprocess.Popen, loop: asyncio.AbstractEventLoop, cap: int,
        progress: Progress | None = None,
    ) -> None:
        self.proc = proc
        self.loop = loop
        self.cap = cap
        self.out = bytearray()
        self.err = bytearray()
        self._progress = progress
        self._line = bytearray()  # the unfinished last line of stderr
        self.overflow = False
        self.exited: asyncio.Future[int] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()
        self._pidfd: int | None = None
        self._stdin = proc.stdin.fileno() if proc.stdin else -1
        self._readers: dict[int, bytearray] = {}
        for pipe, buf in ((proc.stdout, self.out), (proc.stderr, self.err)):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self._readers[fd] = buf
            loop.add_reader(fd, self._read, fd)
        self._watch_exit()

    # -- exit ---------------------------------------------------------------

    def _watch_exit(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):  # not Linux 5.3+: a thread waits instead
            job = self.loop.run_in_executor(None, self.proc.wait)
            job.add_done_callback(lambda j: self._set_exit(j.result()))
            return
        self.loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        assert self._pidfd is not None
        self.loop.remove_reader(self._pidfd)
        try:
            _, status = os.waitpid(self.proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped elsewhere; Popen knows the code
            code = self.proc.returncode if self.proc.returncode is not None else -1
        self.proc.returncode = code
        self._set_exit(code)

    def _set_exit(self, code: int) -> None:
        if not self.exited.done():
            self.exited.set_result(code)

    # -- pipes --------------------------------------------------------------

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if self._readers[fd] is self.err and self._line:
                self._stderr_line(bytes(self._line))
                self._line.clear()
            self.loop.remove_reader(fd)
            del self._readers[fd]
            if not self._readers and not self.drained.done():
                self.drained.set_result(None)
            return
        buf = self._readers[fd]
        if buf is self.out:
            if self.overflow:
                return
            if len(buf) + len(data) > self.cap:
                # Stop a command that floods stdout rather than drain it forever.
                self.overflow = True
                _signal_group(self.proc.pid, signal.SIGKILL)
                return
            buf += data
        elif self._progress is None:
            self._keep_err(data)
        else:
            self._split_err(data)

    def _keep_err(self, data: bytes) -> None:
        self.err += data
        if len(self.err) > 4 * _READ_SIZE:
            del self.err[: -2 * _READ_SIZE]

    def _split_err(self, data: bytes) -> None:
        """Take progress lines out of stderr and report them; keep the rest."""
        self._line += data
        *lines, rest = bytes(self._line).split(b"\n")
        self._line[:] = rest
        if len(self._line) > _LINE_MAX:  # a long line without an end: no progress line
            self._keep_err(bytes(self._line))
            self._line.clear()
        for line in lines:
            self._stderr_line(line + b"\n")

    def _stderr_line(self, line: bytes) -> None:
        found = parse_progress(line) if len(line) <= _LINE_MAX else None
        if found is None:
            self._keep_err(line)
            return
        assert self._progress is not None
        try:
            self._progress(*found)
        except Exception:  # a report that cannot be taken is dropped, not fatal
            pass

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        fd = self._stdin
        os.set_blocking(fd, False)

        def write() -> None:
            nonlocal view
            try:
                while view:
                    view = view[os.write(fd, view):]
            except BlockingIOError:
                self.loop.add_writer(fd, write_more)
                return
            except OSError:  # EPIPE: the command does not read its stdin
                pass
            self._close_stdin()

        def write_more() -> None:
            self.loop.remove_writer(fd)
            write()

        write()

    def _close_stdin(self) -> None:
        if self._stdin >= 0 and self.proc.stdin is not None:
            self.loop.remove_writer(self._stdin)
            self._stdin = -1
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    # -- the run ------------------------------------------------------------

    async def finish(self, payload: bytes, grace: float) -> int:
        """Feed the payload, wait for the exit and the end of the output."""
        self._feed(payload)
        code = await self.exited
        if _group_alive(self.proc.pid):
            # The command left processes behind in its group: they end with it.
            await self.stop(grace)
        try:
            # A process that left the group may hold the pipes open: wait a little.
            await asyncio.wait_for(asyncio.shield(self.drained), timeout=max(grace, 0.5))
        except TimeoutError:
            pass
        return code

    async def stop(self, grace: float) -> None:
        """SIGTERM to the group, SIGKILL to what is left after ``grace``."""
        pgid = self.proc.pid
        try:
            if _signal_group(pgid, signal.SIGTERM):
                await self._gone(pgid, grace)
        finally:  # also when cancelled again while waiting
            if _group_alive(pgid):
                _signal_group(pgid, signal.SIGKILL)
        # SIGKILL cannot be refused, but the kernel takes a moment to end them:
        # wait for that (a busy or virtualised machine can take most of a
        # second), so that no member of the group outlives run().
        await self._gone(pgid, KILLED_GONE_WITHIN)
        if not self.exited.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), timeout=5.0)
            except TimeoutError:
                pass

    async def _gone(self, pgid: int, seconds: float) -> bool:
        """Whether the group ended within ``seconds``. Polled: no event tells
        when a grandchild exits."""
        deadline = self.loop.time() + seconds
        pause = 0.005
        while True:
            if not _group_alive(pgid):
                return True
            if self.loop.time() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(0.1, pause * 2)

    def close(self) -> None:
        """Release the pipes and the pidfd; reap the process if it is still there."""
        self._close_stdin()
        for fd in list(self._readers):
            self.loop.remove_reader(fd)
        self._readers.clear()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self._pidfd is not None:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self.proc.returncode is None:
            # Only after a failure of stop(): SIGKILL was sent, reaping is quick.
            self.proc.kill()
            self.loop.run_in_executor(None, self.proc.wait)
