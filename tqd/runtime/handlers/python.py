"""The ``python`` kind: call ``module:function`` from the configured python_path.

Async functions run on the event loop; plain functions run in a thread pool
so they cannot block it. A function receives ``(payload, ctx)``. A sync
function that outlives its timeout or is cancelled keeps its thread until it
returns (Python cannot stop a thread); its result is then discarded.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqd.errors import ConfigError
from tqd.runtime.handlers.base import TaskContext


def resolve_target(target: str, python_path: Sequence[str], where: str) -> Callable[..., Any]:
    """Import ``module:function``; ConfigError names ``where`` and the cause."""
    for entry in python_path:
        if entry not in sys.path:
            sys.path.insert(0, entry)
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{where}: cannot import module {module_name!r}: {err}") from None
    except Exception as err:  # the module itself raised while importing
        raise ConfigError(
            f"{where}: importing {module_name!r} raised {type(err).__name__}: {err}"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{where}: module {module_name!r} has no {attr_path!r}") from None
    if not callable(obj):
        raise ConfigError(f"{where}: {target!r} is not callable")
    return obj


class PythonCall:
    """Runs one Python function per task."""

    def __init__(self, fn: Callable[..., Any], executor: ThreadPoolExecutor) -> None:
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
        )
        self._executor = executor

    async def run(self, ctx: TaskContext) -> Any:
        if self._is_async:
            return await self._fn(ctx.payload, ctx)
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, self._fn, ctx.payload, ctx)
        return await loop.run_in_executor(self._executor, call)

    async def close(self) -> None:
        pass
