"""A Redis that goes away, stalls, comes back or may evict."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time

import msgspec
import pytest
from redis.asyncio import Redis

from tests.helpers.redis_server import free_port, start_server
from tests.storage.helpers import TaskMaker, put
from tqd.clock import FakeClock
from tqd.errors import ConfigError, Conflict, StorageUnavailable
from tqd.models import Change
from tqd.storage.redis import RedisStorage

from .waiting import Heard, eventually


async def test_a_dead_server_is_unavailable_at_once_and_a_restarted_one_is_used_again(
    own_redis, opened
):
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened(own_redis.url)
    heard = Heard(s)
    await put(s, make())
    own_redis.stop()
    for attempt in (s.ping(), s.enqueue([make()]), s.lease("q", 10, "w", clock.now()), s.queues()):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await attempt
        assert time.monotonic() - started < 1.0
    own_redis.start()  # same port, empty (no persistence in tests)

    async def answers() -> bool:
        try:
            await s.ping()
        except StorageUnavailable:
            return False
        return True

    await eventually(answers)
    # scripts are loaded again after NOSCRIPT, and the subscription is back
    task = (await put(s, make(queue="after")))[0]
    assert (await s.get(task.id)).queue == "after"

    async def resubscribed() -> bool:
        return s._sub.connected and s._sub.resyncs == 1

    await eventually(resubscribed)
    other = await opened(own_redis.url)
    await put(other, make(name="marker"))
    await heard.until(lambda ch: any(c.name == "marker" for c in ch))


async def test_a_stalled_server_times_out_instead_of_hanging(own_redis, opened):
    s = await opened(own_redis.url, socket_timeout=0.3, connect_timeout=0.3)
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await s.ping()
        assert time.monotonic() - started < 2.0
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)


async def test_open_refuses_an_unreachable_server(own_redis):
    url = own_redis.url
    own_redis.stop()
    with pytest.raises(StorageUnavailable):
        await RedisStorage(url, connect_timeout=0.5).open()


async def test_an_evicting_server_is_warned_about_or_refused(own_redis, opened, caplog):
    client = Redis.from_url(own_redis.url)
    await client.config_set("maxmemory-policy", "allkeys-lru")
    await client.aclose()
    with caplog.at_level(logging.WARNING, logger="tqd.storage.redis"):
        await opened(own_redis.url)
    assert "allkeys-lru" in caplog.text
    with pytest.raises(ConfigError, match="noeviction"):
        await RedisStorage(own_redis.url, refuse_eviction=True).open()


async def test_open_logs_the_server_version(opened, caplog):
    with caplog.at_level(logging.INFO, logger="tqd.storage.redis"):
        s = await opened()
    assert s.server_version[0].isdigit()
    assert f"Redis {s.server_version}" in caplog.text


async def test_a_unix_socket_url(tmp_path):
    sock = tmp_path / "r.sock"
    server = start_server(tmp_path, ("--unixsocket", str(sock), "--unixsocketperm", "700"))
    s = RedisStorage(f"unix://{sock}", prefix="u")
    try:
        await s.open()
        clock = FakeClock()
        heard = Heard(s)
        task = (await put(s, TaskMaker(clock)()))[0]
        assert (await s.get(task.id)).id == task.id
        assert heard.changes == [Change(task.id, "q", "job", "pending", "enqueue")]
    finally:
        await s.close()
        server.stop()


async def test_a_database_the_server_does_not_have_is_a_config_error(tmp_path):
    server = start_server(tmp_path, ("--databases", "4"))
    try:
        with pytest.raises(ConfigError, match=r"refused the database of .*/4: DB index is out of range"):
            await RedisStorage(f"redis://127.0.0.1:{server.port}/4").open()
    finally:
        server.stop()


async def test_a_password_in_the_url_is_used_and_never_logged(tmp_path, caplog):
    server = start_server(tmp_path, ("--requirepass", "s3cret"))
    host = f"127.0.0.1:{server.port}"
    try:
        with pytest.raises(ConfigError):
            await RedisStorage(f"redis://:wrong@{host}/0").open()
        s = RedisStorage(f"redis://:s3cret@{host}/0", prefix="p")
        with caplog.at_level(logging.INFO, logger="tqd.storage.redis"):
            await s.open()
        await s.ping()
        await s.close()
        assert "s3cret" not in caplog.text
    finally:
        server.stop()


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_a_rediss_url_with_ca_and_client_certificate(tmp_path):
    cert, key = _self_signed(tmp_path)
    tls_port = free_port()
    server = start_server(
        tmp_path,
        ("--tls-port", str(tls_port), "--tls-cert-file", cert, "--tls-key-file", key,
         "--tls-ca-cert-file", cert, "--tls-auth-clients", "yes"),
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{tls_port}/0"
    try:
        with pytest.raises((StorageUnavailable, ConfigError)):
            await RedisStorage(url, ssl_ca_certs=cert, connect_timeout=1).open()
        s = RedisStorage(url, prefix="tls", ssl_ca_certs=cert, ssl_certfile=cert, ssl_keyfile=key)
        await s.open()
        try:
            task = (await put(s, TaskMaker(FakeClock())()))[0]
            assert (await s.get(task.id)).id == task.id
        finally:
            await s.close()
    finally:
        server.stop()


async def test_a_hung_server_costs_one_timeout_then_calls_fail_at_once(own_redis, opened):
    """The breaker: after one call found Redis down, the next ones do not
    wait; once Redis answers again the probe closes it by itself."""
    s = await opened(own_redis.url, socket_timeout=0.5, connect_timeout=0.5)
    clock = FakeClock()
    make = TaskMaker(clock)
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(StorageUnavailable):
            await s.enqueue([make()])  # waits out the socket timeout
        for attempt in (s.enqueue([make()]), s.ping(), s.queues(), s.get("0" * 20)):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable, match="Redis is unavailable"):
                await attempt
            assert time.monotonic() - started < 0.1
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)

    async def answers() -> bool:
        try:
            await s.ping()
        except StorageUnavailable:
            return False
        return True

    await eventually(answers)
    assert (await put(s, make()))[0].state == "pending"


async def test_a_lost_queue_registry_is_restored_after_a_resync(opened, raw, redis_prefix):
    """A restart that lost the registry: the queues this process used come
    back with the resync, so the scheduler and supervisor see them again."""
    clock = FakeClock()
    make = TaskMaker(clock)
    s = await opened()
    await put(s, make(queue="a", delay=5.0), make(queue="b"))
    await raw.delete(f"{redis_prefix}:queues")
    assert await s.promote_due(clock.now() + 10, 100) == 0  # "a" is invisible
    await raw.client_kill_filter(_type="pubsub")

    async def restored() -> bool:
        return s._sub.resyncs >= 1 and s._sub.connected

    await eventually(restored)
    assert {q.name for q in await s.queues()} == {"a", "b"}
    assert await s.promote_due(clock.now() + 10, 100) == 1


async def test_an_enqueue_whose_answer_was_lost_is_reported_created(opened):
    """A dropped connection after Redis ran the script: the one retry finds
    the batch's own ids, which is success, not a conflict."""
    make = TaskMaker(FakeClock())
    s = await opened()
    batch = make.many(3)
    await s._enqueue_now(batch)  # the first run, whose answer "was lost"
    results = await s._enqueue_now(batch)  # the retry
    assert [(r.task.id, r.created) for r in results] == [(t.id, True) for t in batch]
    other = make()
    clash = [make(), msgspec.structs.replace(other, id=batch[0].id, payload=b"1")]
    with pytest.raises(Conflict):
        await s._enqueue_now(clash)
