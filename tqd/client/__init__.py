"""Python clients of tqd's HTTP API.

``Client`` (synchronous, standard library only) and ``AsyncClient``
(aiohttp) offer the same calls: enqueue, enqueue_many, get, wait, list,
cancel, retry, delete, queues, pause, resume, update_queue and the pull API of remote
workers (lease, heartbeat, complete, fail, settle). ``RemoteWorker`` runs
Python functions for the tasks of a remote queue. Importing this package
loads neither aiohttp nor asyncio: the async parts load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tqd.client.calls import FINISHED, QueueJSON, TaskJSON
from tqd.client.errors import ApiError, Unreachable
from tqd.client.sync import Client

if TYPE_CHECKING:
    from tqd.client.aio import AsyncClient
    from tqd.client.worker import RemoteTask, RemoteWorker, TaskFailed

__all__ = [
    "FINISHED",
    "ApiError",
    "AsyncClient",
    "Client",
    "QueueJSON",
    "RemoteTask",
    "RemoteWorker",
    "TaskFailed",
    "TaskJSON",
    "Unreachable",
]


def __getattr__(name: str) -> Any:
    if name == "AsyncClient":
        from tqd.client.aio import AsyncClient

        return AsyncClient
    if name in ("RemoteWorker", "RemoteTask", "TaskFailed"):
        from tqd.client import worker

        return getattr(worker, name)
    raise AttributeError(f"module 'tqd.client' has no attribute {name!r}")
