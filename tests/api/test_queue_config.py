"""[queues.NAME] settings applied to the store: at start and on reload, only
when the file's settings for a queue changed since they were last applied,
so a change made at run time (PATCH) survives restarts with the same file.

The first tests drive :func:`apply_queue_config` against a recording stand-in
of the store (they need no backend support for limits); the others run a
whole Daemon on SQLite, and need the backend's ``set_limits`` (issue 8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from tqd.config import QueueConfig, load_config
from tqd.daemon import Daemon
from tqd.errors import NotFound
from tqd.models import NO_LIMITS, QueueInfo, QueueLimits
from tqd.runtime.queue_config import apply_queue_config, config_digest, limits_of

# -- the digest ------------------------------------------------------------------


def test_digest_names_the_stored_settings_only() -> None:
    base = QueueConfig(concurrency=3, rate_limit=10)
    assert config_digest(base) == config_digest(QueueConfig(concurrency=3, rate_limit=10))
    assert config_digest(base) == config_digest(msgspec.structs.replace(base, weight=7))
    assert config_digest(base) == config_digest(msgspec.structs.replace(base, rate_interval=1))
    digests = {config_digest(base)}
    for change in ({"concurrency": 4}, {"concurrency": None}, {"rate_limit": 11},
                   {"rate_interval": 2.0}, {"rate_burst": 20}, {"group_concurrency": 1},
                   {"paused": True}, {"paused": False}):
        digests.add(config_digest(msgspec.structs.replace(base, **change)))
    assert len(digests) == 9  # every stored setting changes it
    assert all(d.startswith("v1:") for d in digests)


def test_limits_of_a_table() -> None:
    q = QueueConfig(concurrency=2, rate_limit=5, rate_interval=60, rate_burst=9,
                    group_concurrency=1, paused=True, weight=4)
    assert limits_of(q) == QueueLimits(concurrency=2, rate_limit=5, rate_interval=60.0,
                                       rate_burst=9, group_concurrency=1)
    assert limits_of(QueueConfig()) == NO_LIMITS


# -- apply_queue_config against a recording store -----------------------------------


class RecordingStore:
    """The three store operations apply_queue_config uses, kept in a dict."""

    def __init__(self) -> None:
        self.infos: dict[str, QueueInfo] = {}
        self.calls: list[tuple[Any, ...]] = []

    async def queue(self, name: str) -> QueueInfo:
        if name not in self.infos:
            raise NotFound(f"no queue named {name!r}")
        return self.infos[name]

    async def set_limits(self, name: str, limits: QueueLimits, now: float,
                         config_digest: str | None = None,
                         expected: QueueLimits | None = None) -> QueueInfo:
        self.calls.append(("limits", name, limits, config_digest))
        info = self.infos.get(name) or QueueInfo(name=name)
        info = msgspec.structs.replace(info, limits=limits)
        if config_digest is not None:
            info = msgspec.structs.replace(info, config_digest=config_digest)
        self.infos[name] = info
        return info

    async def set_paused(self, name: str, paused: bool) -> QueueInfo:
        self.calls.append(("paused", name, paused))
        self.infos[name] = msgspec.structs.replace(self.infos[name], paused=paused)
        return self.infos[name]


def _config(tmp_path: Path, **queues: dict[str, Any]):
    return load_config(None, env={}, check_paths=False,
                       overrides={"storage": f"sqlite://{tmp_path}/tqd.db", "queues": queues})


async def test_apply_writes_new_and_changed_tables_only(tmp_path: Path) -> None:
    store = RecordingStore()
    config = _config(tmp_path, a={"concurrency": 2, "paused": True}, b={"rate_limit": 5})
    assert await apply_queue_config(store, config, 100.0) == ["a", "b"]  # type: ignore[arg-type]
    assert store.calls == [
        ("limits", "a", QueueLimits(concurrency=2), config_digest(config.queues["a"])),
        ("paused", "a", True),
        ("limits", "b", QueueLimits(rate_limit=5), config_digest(config.queues["b"])),
    ]
    store.calls.clear()
    # The same file again (a restart, a reload): nothing written.
    assert await apply_queue_config(store, config, 101.0) == []  # type: ignore[arg-type]
    assert store.calls == []
    # A runtime change keeps the digest: still nothing written.
    await store.set_limits("a", QueueLimits(concurrency=9), 102.0)
    await store.set_paused("a", False)
    store.calls.clear()
    assert await apply_queue_config(store, config, 103.0) == []  # type: ignore[arg-type]
    assert store.infos["a"].limits.concurrency == 9 and not store.infos["a"].paused
    # A new weight is not stored: nothing written.
    reweighed = _config(tmp_path, a={"concurrency": 2, "paused": True, "weight": 5},
                        b={"rate_limit": 5})
    assert await apply_queue_config(store, reweighed, 104.0) == []  # type: ignore[arg-type]
    # The file's table of b changed: b alone is written, whole.
    edited = _config(tmp_path, a={"concurrency": 2, "paused": True}, b={"rate_limit": 6})
    assert await apply_queue_config(store, edited, 105.0) == ["b"]  # type: ignore[arg-type]
    assert store.calls == [("limits", "b", QueueLimits(rate_limit=6), config_digest(edited.queues["b"]))]
    assert store.infos["a"].limits.concurrency == 9


async def test_paused_unset_leaves_the_queue_as_it_is(tmp_path: Path) -> None:
    store = RecordingStore()
    await apply_queue_config(store, _config(tmp_path, a={"concurrency": 1}), 1.0)  # type: ignore[arg-type]
    assert [c[0] for c in store.calls] == ["limits"]


# -- a whole daemon on SQLite (needs the backend's set_limits) -------------------------


async def _start(tmp_path: Path, **queues: dict[str, Any]) -> Daemon:
    config = load_config(None, env={}, overrides={
        "listen": "127.0.0.1:0", "storage": f"sqlite://{tmp_path}/tqd.db", "shutdown_grace": 1.0,
        "queues": queues,
    })
    daemon = Daemon(config)
    try:
        await daemon.start()
    except BaseException:
        await daemon.stop()
        raise
    return daemon


async def _queue(daemon: Daemon, name: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{daemon.url}/v1/queues/{name}") as r:
        assert r.status == 200
        return await r.json()


async def _patch(daemon: Daemon, name: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, \
            http.patch(f"{daemon.url}/v1/queues/{name}", json=body) as r:
        answer = await r.json()
        assert r.status == 200, answer
        return answer


async def test_start_applies_the_file_and_a_patch_survives_a_restart(tmp_path: Path) -> None:
    settings = {"concurrency": 3, "rate_limit": 20, "rate_interval": 60, "paused": True}
    daemon = await _start(tmp_path, images=settings)
    try:
        q = await _queue(daemon, "images")
        assert q["paused"] is True
        assert q["limits"] == {"concurrency": 3, "rate_limit": 20, "rate_interval": 60.0,
                               "rate_burst": None, "group_concurrency": None}
        await _patch(daemon, "images", {"concurrency": 7, "paused": False})
    finally:
        await daemon.stop()

    daemon = await _start(tmp_path, images=settings)  # the same file
    try:
        q = await _queue(daemon, "images")
        assert q["paused"] is False and q["limits"]["concurrency"] == 7
        assert q["limits"]["rate_limit"] == 20
    finally:
        await daemon.stop()

    daemon = await _start(tmp_path, images={**settings, "concurrency": 4})  # the file edited
    try:
        q = await _queue(daemon, "images")
        assert q["paused"] is True  # the whole table is applied again
        assert q["limits"]["concurrency"] == 4
    finally:
        await daemon.stop()


async def test_reload_applies_an_edited_table_and_keeps_runtime_changes_otherwise(
    tmp_path: Path,
) -> None:
    daemon = await _start(tmp_path, a={"concurrency": 2}, b={"group_concurrency": 1})
    try:
        await _patch(daemon, "a", {"concurrency": 9})
        await _patch(daemon, "b", {"group_concurrency": 5})
        edited = msgspec.structs.replace(daemon.config, queues={
            "a": QueueConfig(concurrency=2, weight=3),  # weight only: not stored
            "b": QueueConfig(group_concurrency=2),
            "c": QueueConfig(rate_limit=1, rate_burst=4),  # a new table
        })
        assert await daemon.reload(lambda: edited)
        assert (await _queue(daemon, "a"))["limits"]["concurrency"] == 9
        assert (await _queue(daemon, "b"))["limits"]["group_concurrency"] == 2
        c = await _queue(daemon, "c")
        assert c["limits"]["rate_limit"] == 1 and c["limits"]["rate_burst"] == 4
        assert c["paused"] is False
    finally:
        await daemon.stop()
