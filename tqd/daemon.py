"""The composition root: build every part from one Config, start them in
order, stop them in reverse.

Start: store → catalog and handlers → queues declared (and the limits of
[queues.NAME] applied when the file changed them) → orphaned leases
taken back (single-process stores) → roles → worker pool → HTTP API.
Stop (SIGTERM/SIGINT): the API keeps answering but refuses new tasks (503)
→ the pool stops leasing, lets running tasks finish within the grace and
hands back the rest → long polls (``?wait=``) are answered → roles stop →
the API closes → the store closes. A second signal exits at once. SIGHUP
reloads the configuration (tqd/reload.py). Under systemd (``$NOTIFY_SOCKET``)
the states are reported with sd_notify (tqd/sdnotify.py): READY, RELOADING,
STOPPING, STATUS lines, watchdog pings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from tqd.api.app import Services, create_app
from tqd.api.connections import ConnectionLimit, LimitedSite, effective_limit
from tqd.api.limits import server_settings
from tqd.clock import Clock, SystemClock
from tqd.config import DEFAULT_MAX_CONNECTIONS, Config, load_config
from tqd.errors import ConfigError
from tqd.exposure import is_loopback, tls_context
from tqd.reload import pool_settings, reload_daemon
from tqd.runtime.catalog import Catalog
from tqd.runtime.cron import Cron, build_schedules
from tqd.runtime.handlers import HandlerSet, build_handlers
from tqd.runtime.heartbeat import Heartbeat
from tqd.runtime.janitor import Janitor
from tqd.runtime.meter import Meter
from tqd.runtime.pool import WorkerPool
from tqd.runtime.progress import ProgressWriter
from tqd.runtime.queue_config import apply_queue_config
from tqd.runtime.role import Role
from tqd.runtime.scheduler import Scheduler
from tqd.runtime.stats import StatsRecorder
from tqd.runtime.supervisor import Supervisor
from tqd.sdnotify import Notifier, forget_environment, keep_alive
from tqd.storage.base import SHARED, Storage
from tqd.storage.factory import create_storage

log = logging.getLogger("tqd.daemon")


def new_worker_id() -> str:
    """An id for this process: host, pid and a random suffix (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Daemon:
    """One tqd process: store, pool, roles and API, started and stopped together."""

    config: Config
    clock: Clock = field(default_factory=SystemClock)
    worker_id: str = field(default_factory=new_worker_id)

    storage: Storage | None = None
    catalog: Catalog | None = None
    handlers: HandlerSet | None = None
    pool: WorkerPool | None = None
    meter: Meter | None = None
    services: Services | None = None
    roles: list[Role] = field(default_factory=list)
    cron: Cron | None = None
    progress: ProgressWriter | None = None
    #: The limit on open HTTP connections ([api] max_connections).
    connections: ConnectionLimit | None = None
    url: str = ""
    _role_jobs: list[asyncio.Task] = field(default_factory=list)
    #: Closings of handler sets a reload replaced (see tqd/reload.py).
    retiring: set[asyncio.Task] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Start every part; return the URL the API listens on."""
        cfg = self.config
        self.catalog = Catalog(cfg)
        schedules = build_schedules(cfg, self.catalog)
        self.handlers = build_handlers(self.catalog, cfg)
        storage = self.storage = create_storage(cfg.storage_url, cfg)
        await storage.open()
        # Counts this process's work from the store's changes (for /metrics, /v1/stats).
        self.meter = Meter(self.clock)
        storage.add_listener(self.meter.on_changes)
        self.progress = ProgressWriter(storage, self.clock, cfg.roles.progress_interval)
        self.progress.start()
        self.cron = Cron(
            storage, self.catalog, schedules, self.clock, grace=cfg.roles.cron_misfire_grace
        )
        queues = set(cfg.queues) | self.catalog.queues() | {cfg.defaults.queue}
        await storage.declare_queues(sorted(queues))
        # [queues.NAME] limits whose file settings changed since last applied.
        await apply_queue_config(storage, cfg, self.clock.now())
        if SHARED not in storage.capabilities:
            orphans = await storage.reclaim_orphans(self.clock.now())
            if orphans:
                log.warning("took back %d tasks left processing by a previous run", len(orphans))

        if cfg.worker.enabled:
            self.pool = WorkerPool(
                storage,
                self.catalog,
                self.handlers,
                pool_settings(cfg, self.catalog, self.worker_id),
                self.clock,
                self.progress,
            )
            self.pool.observer = self.meter
            self.meter.watch_running(self.pool.running)
        self._start_roles()
        if self.pool is not None:
            await self.pool.start()

        limit, cut = effective_limit(cfg)
        if cut is not None:
            # The default adapting to a low limit (a shell's ulimit) is news;
            # a value the operator chose and cannot have is a warning.
            explicit = cfg.api.max_connections != DEFAULT_MAX_CONNECTIONS
            log.log(logging.WARNING if explicit else logging.INFO, "%s", cut)
        self.connections = ConnectionLimit(limit)
        self.services = Services(
            storage=storage, catalog=self.catalog, config=cfg, clock=self.clock, pool=self.pool,
            meter=self.meter, cron=self.cron, progress=self.progress, connections=self.connections,
        )
        app = create_app(self.services)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, **server_settings(cfg)
        )
        await self._runner.setup()
        tls = tls_context(cfg)
        site = LimitedSite(self._runner, self.connections, cfg.host, cfg.port, reuse_address=True,
                           ssl_context=tls)
        try:
            await site.start()
        except OSError as err:  # port taken, address not on this host, no permission
            raise ConfigError(
                f"listen: cannot listen on {cfg.listen}: "
                f"{os.strerror(err.errno) if err.errno else err}"
            ) from None
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if tls else 'http'}://{shown}:{port}"
        if cfg.tokens and tls is None and not is_loopback(cfg.host):
            log.warning("tokens travel in clear text on %s: configure [tls] or a TLS proxy", cfg.listen)
        log.info("tqd listening on %s (storage %s, worker %s)", self.url, storage.kind, self.worker_id)
        return self.url

    def _start_roles(self) -> None:
        cfg, storage, clock = self.config, self.storage, self.clock
        assert storage is not None and self.catalog is not None
        roles: list[Role] = [
            Supervisor(storage, clock, cfg.roles.supervisor_interval),
            Janitor(storage, clock, cfg.retention, cfg.roles.janitor_interval),
        ]
        scheduler = Scheduler(storage, clock, cfg.roles.scheduler_interval)
        storage.add_listener(scheduler.on_changes)
        roles.append(scheduler)
        assert self.meter is not None
        roles.append(StatsRecorder(storage, self.meter, clock, cfg.roles.stats_interval))
        if self.cron is not None:
            roles.append(self.cron)
        # Every process registers, with or without workers (heartbeat.py).
        shortest = min(d.visibility_timeout for d in self.catalog.definitions())
        roles.append(
            Heartbeat(
                storage,
                self.pool,
                clock,
                interval=min(cfg.roles.heartbeat_interval, shortest / 3),
                worker_ttl=cfg.roles.worker_ttl,
                worker_id=self.worker_id,
            )
        )
        self.roles = roles
        self._role_jobs = [asyncio.create_task(r.run(), name=f"tqd-{r.name}") for r in roles]

    async def reload(self, load: Callable[[], Config]) -> bool:
        """Apply the configuration ``load()`` returns; keep the running one if it
        is invalid. True if applied (see tqd/reload.py)."""
        return await reload_daemon(self, load)

    async def status_line(self) -> str:
        """One line of queue totals for ``systemctl status``."""
        assert self.storage is not None
        totals: dict[str, int] = {}
        queues = await self.storage.queues()
        for info in queues:
            for state, n in info.counts.items():
                totals[state] = totals.get(state, 0) + n
        shown = ", ".join(
            f"{totals.get(s, 0)} {s}" for s in ("pending", "scheduled", "processing", "completed", "failed")
        )
        here = ""
        if self.pool is not None:
            here = f"; {len(self.pool.running)}/{self.pool.settings.concurrency} running here"
        plural = "" if len(queues) == 1 else "s"
        return f"{shown} in {len(queues)} queue{plural}{here}"

    async def stop(self) -> None:
        """Drain and stop every part, in reverse order of start."""
        if self.services is not None:
            self.services.draining = True
        # A start that failed says why in one line (the CLI prints it); the
        # clean-up after it is not news.
        started = bool(self.url)
        if started:
            log.info("stopping: no new tasks accepted")
        if self.pool is not None:
            handed_back = await self.pool.stop(self.config.shutdown_grace)
            if handed_back:
                log.warning("handed back %d tasks that did not finish within the grace", handed_back)
        if self.retiring:
            await asyncio.wait(self.retiring, timeout=5.0)
        if self.services is not None:
            # Running tasks have ended or been handed back: answer long polls now.
            self.services.waiters.close()
        for role in self.roles:
            role.stop()
        if self._role_jobs:
            _, late = await asyncio.wait(self._role_jobs, timeout=5.0)
            for job in late:
                job.cancel()
        for role in self.roles:
            if isinstance(role, StatsRecorder):
                try:  # the last second of statistics
                    await asyncio.wait_for(role.run_once(self.clock.now()), 2.0)
                except Exception as err:
                    log.warning("could not record the last statistics: %s", err)
        if self.storage is not None and self.roles:  # registered only once roles ran
            try:
                await self.storage.unregister_worker(self.worker_id)
            except Exception as err:
                log.warning("could not unregister this process: %s", err)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.connections is not None:
            self.connections.close()
        if self.progress is not None:
            await self.progress.close()
        if self.handlers is not None:
            await self.handlers.close()
        if self.storage is not None:
            await self.storage.close()
        if started:
            log.info("stopped")


async def serve(
    config: Config,
    on_ready: Callable[[str], None] | None = None,
    load: Callable[[], Config] | None = None,
) -> int:
    """Run a daemon until SIGTERM or SIGINT; return the exit status.

    The first signal drains; a second one exits at once with status 1.
    SIGHUP reloads with ``load()`` (default: read ``config.source`` again).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reload_wanted = asyncio.Event()
    notifier = Notifier()
    forget_environment()
    if load is None:
        path = config.source if config.source != "defaults" else None
        load = lambda: load_config(path)  # noqa: E731

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal (%s): exiting at once", signal.Signals(signum).name)
            os._exit(1)
        log.info("received %s: draining", signal.Signals(signum).name)
        notifier.stopping(f"draining: finishing running tasks (up to {daemon.config.shutdown_grace:g}s)")
        stop.set()
        reload_wanted.set()

    def on_hangup() -> None:
        log.info("received SIGHUP: reloading the configuration")
        reload_wanted.set()

    daemon = Daemon(config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        url = await daemon.start()
    except BaseException:
        await daemon.stop()
        raise
    if on_ready is not None:
        on_ready(url)
    notifier.ready(f"listening on {url}; {await _status(daemon)}")
    keeper = asyncio.create_task(keep_alive(notifier, daemon.status_line), name="tqd-sdnotify")
    reloader = asyncio.create_task(
        _reload_on_signal(daemon, load, reload_wanted, stop, notifier), name="tqd-reload"
    )
    await stop.wait()
    await reloader  # lets a reload in progress finish before the drain
    await daemon.stop()
    keeper.cancel()
    await asyncio.gather(keeper, return_exceptions=True)
    notifier.close()
    return 0


async def _status(daemon: Daemon) -> str:
    try:
        return await asyncio.wait_for(daemon.status_line(), timeout=2.0)
    except Exception as err:
        return f"status unavailable: {type(err).__name__}"


async def _reload_on_signal(
    daemon: Daemon, load: Callable[[], Config], wanted: asyncio.Event, stop: asyncio.Event,
    notifier: Notifier,
) -> None:
    """Reload each time ``wanted`` is set, one reload at a time, until ``stop``."""
    while True:
        await wanted.wait()
        wanted.clear()
        if stop.is_set():
            return
        notifier.reloading()
        await daemon.reload(load)
        notifier.ready(await _status(daemon))
