"""Reloading the configuration of a running daemon (SIGHUP, ``systemctl reload``).

A reload reads the config file again the way the process was started (same
file, same flags and ``TQD_*`` variables), builds a new catalog and new
handlers, and only when all of that succeeds swaps them into the worker pool
and the API. Anything wrong — unreadable TOML, an unknown key, a handler that
cannot be imported, a store that does not answer — is logged and the
configuration in use is kept.

Which settings change at run time is an explicit list, LIVE_SETTINGS. Every
other changed setting (the listen address, the store, the background roles'
intervals, ...) keeps its running value and is named in the log as needing a
restart. To make a new setting reloadable, add it to LIVE_SETTINGS and apply
it in ``reload_daemon``. The tables ``tasks`` and ``queues`` are live as a
whole: a new key inside them (say a queue's rate limit) must also be applied
here, or be read from ``daemon.config`` each time it is used. The limits of
``[queues.NAME]`` kept in the store are written by
:func:`tqd.runtime.queue_config.apply_queue_config` when the file changed them.

Tasks already running keep the handler they started with; the old handlers
are closed once the last of those tasks finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from tqd.api.connections import effective_limit
from tqd.config import Config
from tqd.errors import TqdError
from tqd.exposure import is_loopback
from tqd.runtime.catalog import Catalog
from tqd.runtime.cron import build_schedules
from tqd.runtime.handlers import HandlerSet, build_handlers
from tqd.runtime.heartbeat import Heartbeat
from tqd.runtime.pool import PoolSettings
from tqd.runtime.queue_config import apply_queue_config

if TYPE_CHECKING:
    from tqd.daemon import Daemon

log = logging.getLogger("tqd.reload")

#: Settings a reload applies (a name is a top-level key, or ``section.key``).
LIVE_SETTINGS = frozenset({
    "tasks",
    "queues",
    "defaults",
    "python_path",
    "shutdown_grace",
    "log_level",
    "worker.concurrency",
    "worker.queues",
    "worker.lease_batch",
    "api.max_batch",
    "api.max_wait",
    "api.max_connections",
    "schedules",
    "roles.cron_misfire_grace",
    "roles.progress_interval",
    # read by the API at each request (tqd/api/auth.py, cors.py, limits.py):
    # tokens can be rotated without a restart
    "tokens",
    "api.cors_origins",
    "api.max_depth",
    "api.body_timeout",
})

#: Not a setting: where the config came from.
_IGNORED = frozenset({"source"})


def changed_settings(old: Config, new: Config) -> list[str]:
    """Dotted names of the settings whose values differ, in declaration order.

    Sections are compared key by key (``worker.enabled``); named tables
    (``tasks``, ``queues``) and lists as a whole.
    """
    changed: list[str] = []
    for name in old.__struct_fields__:
        if name in _IGNORED:
            continue
        a, b = getattr(old, name), getattr(new, name)
        if isinstance(a, msgspec.Struct) and type(a) is type(b):
            changed += [
                f"{name}.{key}" for key in a.__struct_fields__ if getattr(a, key) != getattr(b, key)
            ]
        elif a != b:
            changed.append(name)
    return changed


def needs_restart(changed: list[str]) -> list[str]:
    """The names in ``changed`` that a reload cannot apply."""
    return [name for name in changed if name not in LIVE_SETTINGS and name.split(".")[0] not in LIVE_SETTINGS]


def keep_running_values(old: Config, new: Config, names: list[str]) -> Config:
    """``new`` with the settings ``names`` set back to their values in ``old``."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for name in names:
        section, _, key = name.partition(".")
        if key:
            sections.setdefault(section, {})[key] = getattr(getattr(old, section), key)
        else:
            top[name] = getattr(old, name)
    for section, values in sections.items():
        top[section] = msgspec.structs.replace(getattr(new, section), **values)
    return msgspec.structs.replace(new, **top)


def pool_settings(config: Config, catalog: Catalog, worker_id: str) -> PoolSettings:
    """The worker pool's settings from ``[worker]``, ``[queues.*]`` and what the
    task definitions of ``catalog`` imply. The one place they are built, at
    start and at each reload."""
    return PoolSettings(
        worker_id=worker_id,
        concurrency=config.worker.concurrency,
        queues=tuple(config.worker.queues),
        exclude=catalog.remote_queues(),
        weights={name: q.weight for name, q in config.queues.items()},
        dispatch=config.worker.dispatch,
        lease_batch=config.worker.lease_batch,
    )


async def reload_daemon(daemon: Daemon, load: Callable[[], Config]) -> bool:
    """Reload ``daemon``'s configuration with ``load()``; True if applied.

    On any failure the running configuration stays and the reason is logged.
    """
    old = daemon.config
    try:
        loaded = load()
    except TqdError as err:
        log.error("reload refused, keeping the running configuration: %s", err.message)
        return False
    if old.tokens and not loaded.tokens and not is_loopback(old.host):
        log.error("reload refused, keeping the running configuration: it removes every token "
                  "while tqd listens on %s, beyond loopback", old.listen)
        return False
    changed = changed_settings(old, loaded)
    restart = needs_restart(changed)
    config = keep_running_values(old, loaded, restart)
    assert daemon.catalog is not None and daemon.storage is not None
    handlers: HandlerSet | None = None
    try:
        catalog = Catalog(config, ids=daemon.catalog.ids)
        schedules = build_schedules(config, catalog)
        handlers = build_handlers(catalog, config)
        queues = set(config.queues) | catalog.queues() | {config.defaults.queue}
        await daemon.storage.declare_queues(sorted(queues))
        await apply_queue_config(daemon.storage, config, daemon.clock.now())
    except Exception as err:
        if handlers is not None:
            await handlers.close()
        reason = err.message if isinstance(err, TqdError) else f"{type(err).__name__}: {err}"
        log.error("reload refused, keeping the running configuration: %s", reason)
        return False

    old_handlers = daemon.handlers
    if daemon.pool is not None:
        await daemon.pool.apply(catalog, handlers, pool_settings(config, catalog, daemon.worker_id))
        shortest = min(d.visibility_timeout for d in catalog.definitions())
        for role in daemon.roles:
            if isinstance(role, Heartbeat):
                # New tasks may have a shorter visibility timeout: extend often enough.
                role.interval = min(config.roles.heartbeat_interval, shortest / 3)
                role.info.concurrency = config.worker.concurrency
                role.wake()
    if daemon.cron is not None:
        daemon.cron.apply(catalog, schedules, config.roles.cron_misfire_grace)
    if daemon.progress is not None:
        daemon.progress.interval = config.roles.progress_interval
    if daemon.connections is not None:
        # Open connections stay; the new limit decides the next ones. Its
        # cap depends on worker.concurrency too (see effective_limit).
        limit, cut = effective_limit(config)
        if cut is not None:
            log.warning("reload: %s", cut)
        daemon.connections.limit = limit
    if daemon.services is not None:
        daemon.services.catalog = catalog
        daemon.services.config = config
    daemon.config, daemon.catalog, daemon.handlers = config, catalog, handlers
    logging.getLogger().setLevel(config.log_level.upper())
    if old_handlers is not None:
        jobs = daemon.pool.jobs_using(old_handlers) if daemon.pool is not None else []
        retire = asyncio.create_task(_close_after(old_handlers, jobs), name="tqd-retire-handlers")
        daemon.retiring.add(retire)
        retire.add_done_callback(daemon.retiring.discard)

    before, after = set(old.tasks), set(config.tasks)
    log.info(
        "reloaded %s: %d task definitions (added: %s; removed: %s), %d queue settings, "
        "%d schedules; changed: %s",
        config.source, len(config.tasks), ", ".join(sorted(after - before)) or "none",
        ", ".join(sorted(before - after)) or "none", len(config.queues), len(schedules),
        ", ".join(n for n in changed if n not in restart) or "nothing",
    )
    if restart:
        log.warning("reload: %s changed but only take%s effect at the next restart; "
                    "the running values are kept", ", ".join(restart), "s" if len(restart) == 1 else "")
    return True


async def _close_after(handlers: HandlerSet, jobs: list[asyncio.Task]) -> None:
    """Close the handlers a reload replaced once the tasks still using them end."""
    if jobs:
        await asyncio.wait(jobs)
    await handlers.close()
