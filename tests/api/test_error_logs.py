"""Every 5xx logs its traceback; the client gets only the error code and message."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from tqd.errors import StorageUnavailable
from tqd.logs import JsonFormatter


class BrokenStore:
    """Stands in for the store of a running app: some reads blow up."""

    def __init__(self, storage, error: Exception) -> None:
        self._storage = storage
        self._error = error

    def __getattr__(self, name):
        return getattr(self._storage, name)

    async def queues(self):
        raise self._error


@pytest.mark.parametrize("error, status", [
    (RuntimeError("a bug"), 500),
    (StorageUnavailable("storage: down"), 503),
])
async def test_every_5xx_logs_its_traceback(tqd, caplog, error, status):
    tqd.services.storage = BrokenStore(tqd.storage, error)
    with caplog.at_level(logging.ERROR, logger="tqd.api"):
        async with aiohttp.ClientSession() as s, s.get(tqd.url + "/v1/queues") as resp:
            assert resp.status == status
            body = await resp.text()
    assert "Traceback" not in body and "a bug" not in body  # never to the client
    [rec] = [r for r in caplog.records if r.name == "tqd.api"]
    assert rec.exc_info is not None
    assert "Traceback" in JsonFormatter().format(rec)
