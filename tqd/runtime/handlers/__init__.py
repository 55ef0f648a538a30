"""Handler kinds, one module each, and the factory that builds them from config."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tqd.config import (
    BuiltinHandler,
    Config,
    ExecHandler,
    HttpHandler,
    PythonHandler,
    RemoteHandler,
)
from tqd.errors import ConfigError
from tqd.runtime.catalog import Catalog
from tqd.runtime.handlers.base import Handler, RawJSON, TaskContext, TaskFailed
from tqd.runtime.handlers.builtin import BUILTINS
from tqd.runtime.handlers.exec import ExecCommand, spawn_executor
from tqd.runtime.handlers.http import HttpPost, SharedSession
from tqd.runtime.handlers.python import PythonCall, resolve_target

__all__ = ["Handler", "HandlerSet", "RawJSON", "TaskContext", "TaskFailed", "build_handlers"]


class HandlerSet:
    """The handlers of every task name, and what they share (a thread pool,
    the threads that start exec commands, the http client session)."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        executor: ThreadPoolExecutor,
        session: SharedSession | None = None,
        spawner: ThreadPoolExecutor | None = None,
    ) -> None:
        self.by_name = handlers
        self._executor = executor
        self._session = session
        self._spawner = spawner

    def get(self, name: str) -> Handler | None:
        """The handler of ``name``; None for names that do not run here (remote)."""
        return self.by_name.get(name)

    async def close(self) -> None:
        """Close every handler, the http session and the thread pool (without
        waiting for stuck threads)."""
        for handler in self.by_name.values():
            await handler.close()
        if self._session is not None:
            await self._session.close()
        if self._spawner is not None:
            self._spawner.shutdown(wait=False, cancel_futures=True)
        self._executor.shutdown(wait=False, cancel_futures=True)


def build_handlers(catalog: Catalog, config: Config) -> HandlerSet:
    """A handler for every task name that runs in this process (remote names
    have none); ConfigError when one cannot be built, e.g. a python target
    that does not import or an exec program that does not exist."""
    executor = ThreadPoolExecutor(
        max_workers=min(64, config.worker.concurrency), thread_name_prefix="tqd-handler"
    )
    session: SharedSession | None = None
    spawner: ThreadPoolExecutor | None = None
    handlers: dict[str, Handler] = {}
    for d in catalog.definitions():
        spec = d.handler
        where = f"{config.source}: tasks.{d.name}.handler"
        if isinstance(spec, BuiltinHandler):
            handlers[d.name] = BUILTINS[spec.name]()
        elif isinstance(spec, PythonHandler):
            fn = resolve_target(spec.target, config.python_path, where)
            handlers[d.name] = PythonCall(fn, executor)
        elif isinstance(spec, ExecHandler):
            if spawner is None:
                spawner = spawn_executor()
            handlers[d.name] = ExecCommand(spec, where, spawner)
        elif isinstance(spec, HttpHandler):
            if session is None:
                session = SharedSession(config.http)
            handlers[d.name] = HttpPost(spec, session, where, config.http.connect_timeout)
        elif isinstance(spec, RemoteHandler):
            continue  # leased by remote workers over the API, never run here
        else:
            raise ConfigError(f"{where}: handler kind {type(spec).__name__} is not supported")
    return HandlerSet(handlers, executor, session, spawner)
