"""How 5xx answers are logged: one line each, no traceback but at DEBUG, the
503s of an unavailable store throttled; the client gets only code and message."""

from __future__ import annotations

import logging

import orjson
import pytest

from tests.api.conftest import Api
from tests.helpers.aio import until
from tqd.api.app import OUTAGE_LOG
from tqd.errors import ConfigError, StorageUnavailable
from tqd.logs import JsonFormatter, TextFormatter

SECRET = "hunter2-xyz"


def redis_down() -> StorageUnavailable:
    """What the Redis backend raises: the driver's error translated, from None."""
    try:
        raise ConnectionRefusedError(f"connecting to redis://:{SECRET}@10.9.8.7:6379/0 refused")
    except ConnectionRefusedError as err:
        try:
            raise StorageUnavailable(f"storage: Redis is unavailable: {err}") from None
        except StorageUnavailable as translated:
            return translated


def break_queues(api: Api, monkeypatch: pytest.MonkeyPatch, make_error) -> None:
    """GET /v1/queues raises ``make_error()`` from the store, a new one each time."""
    async def broken():
        raise make_error()

    monkeypatch.setattr(api.store, "queues", broken)


def written(records: list[logging.LogRecord]) -> str:
    """The records as both formatters write them."""
    return "\n".join(f(r) for r in records for f in (TextFormatter().format, JsonFormatter().format))


async def get_queues(api: Api) -> tuple[int, str]:
    async with api.client.get("/v1/queues") as resp:
        return resp.status, await resp.text()


async def test_an_outage_of_the_store_logs_one_line_without_traceback(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_queues(api, monkeypatch, redis_down)
    with caplog.at_level(logging.DEBUG):  # not even DEBUG holds a traceback for these
        for _ in range(25):
            status, body = await get_queues(api)
            assert status == 503
            assert orjson.loads(body)["error"]["code"] == "storage_unavailable"
            assert "Traceback" not in body and SECRET not in body
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    line = loud[0].getMessage()
    assert loud[0].levelno == logging.WARNING and "\n" not in line
    assert "GET /v1/queues answered 503" in line
    assert "ConnectionRefusedError: storage: Redis is unavailable" in line  # cause and message
    assert "redis://***@10.9.8.7:6379/0" in line
    text = written(caplog.records)
    assert "Traceback" not in text and SECRET not in text


async def test_a_long_outage_is_summed_up_once_per_period_then_ends(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    throttle = api.client.server.app[OUTAGE_LOG]
    throttle.every = 0.3
    break_queues(api, monkeypatch, redis_down)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    with caplog.at_level(logging.INFO, logger="tqd.api"):
        for _ in range(5):
            assert (await get_queues(api))[0] == 503
        await until(lambda: len(lines()) == 2, message="the summary of the period")
        assert "answered 503" in lines()[1] and "; 4 like it in the last 0.3s" in lines()[1]
        # a period with no 503 ends the run: the next one is written at once
        await until(lambda: throttle._timer is None, message="the end of the run")
        assert len(lines()) == 2  # a quiet period writes nothing
        assert (await get_queues(api))[0] == 503
        assert len(lines()) == 3 and "more like it are counted" in lines()[2]


@pytest.mark.parametrize("make_error, status", [
    (lambda: RuntimeError("a bug"), 500),
    (lambda: ConfigError("a bug"), 500),
])
async def test_an_unexpected_failure_is_one_line_its_traceback_at_debug(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, make_error, status
) -> None:
    break_queues(api, monkeypatch, make_error)
    kind = type(make_error()).__name__
    with caplog.at_level(logging.INFO, logger="tqd.api"):
        got, body = await get_queues(api)
    assert got == status
    assert "Traceback" not in body and kind not in body  # never to the client
    if kind == "RuntimeError":
        assert "a bug" not in body  # nor the words of an unexpected one
    [rec] = [r for r in caplog.records if r.name == "tqd.api"]
    assert rec.levelno == logging.ERROR and rec.exc_info is None
    assert rec.getMessage().startswith("GET /v1/queues ")
    assert rec.getMessage().endswith(f"({kind}: a bug)")
    assert "Traceback" not in written([rec])
    caplog.clear()

    with caplog.at_level(logging.DEBUG, logger="tqd.api"):
        assert (await get_queues(api))[0] == status
    recs = [r for r in caplog.records if r.name == "tqd.api"]
    assert [r.levelno for r in recs] == [logging.ERROR, logging.DEBUG]
    assert recs[0].exc_info is None and recs[1].exc_info is not None
    assert "Traceback" in TextFormatter().format(recs[1])
    assert "a bug" in orjson.loads(JsonFormatter().format(recs[1]))["traceback"]
