"""The cron role: enqueues each schedule's task once per scheduled instant.

Every process sharing a store runs this role. At each instant every one of
them enqueues the instant's task with the idempotency key
``cron:<schedule>:<instant>``: the store keeps one task per key and queue,
so exactly one of them creates it and the others get that same task back.
Only then does each record the firing (``claim_firing``, a compare-and-set
on the schedule's last fired instant), which tells a restarted process where
to go on from.

Instants are fired late by up to ``grace`` seconds (a restart, a stalled
process or store); an older instant counts as missed: at start, or after an
outage longer than the grace, a schedule with ``catch_up`` makes up the
latest missed instant once, one without skips them. The store remembers the
last instant fired, so a restarted process neither fires an instant twice
nor mistakes the time it was down for time it was up.

The order matters: a process that dies after the enqueue and before the
record leaves a stored task and an older record, so the next process to
look (another one at once, or this one after its restart, within ``grace``
or with ``catch_up``) enqueues the instant again, gets the stored task back,
and records it. No instant is lost to a crash, and none fires twice while
its task is kept (deleting the task by hand frees the key).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from tqd.clock import Clock
from tqd.config import Config, ScheduleConfig
from tqd.cronspec import CronError, CronSpec
from tqd.errors import ConfigError, NotFound, TqdError
from tqd.models import Firing, Task, rfc3339
from tqd.runtime.catalog import Catalog, NewTask
from tqd.runtime.role import Role
from tqd.storage.base import EnqueueResult, Storage

log = logging.getLogger("tqd.cron")

#: Longest the role sleeps, so a changed wall clock is noticed.
MAX_SLEEP = 60.0


@dataclass(frozen=True, slots=True)
class Schedule:
    """One ``[schedules.NAME]``, checked and ready to fire."""

    name: str
    spec: CronSpec
    task: str
    payload: bytes
    queue: str | None
    priority: int | None
    catch_up: bool
    #: As configured, to tell whether a reload changed it.
    config: ScheduleConfig

    def new_task(self, instant: float | None) -> NewTask:
        """The task one firing enqueues (``instant`` None: a manual trigger)."""
        key = None if instant is None else f"cron:{self.name}:{instant:.0f}"
        return NewTask(
            name=self.task, payload=self.payload, queue=self.queue, priority=self.priority,
            idempotency_key=key,
        )


def build_schedules(config: Config, catalog: Catalog) -> dict[str, Schedule]:
    """The schedules of ``config``, by name; ConfigError names what is wrong."""
    out: dict[str, Schedule] = {}
    for name, sc in sorted(config.schedules.items()):
        where = f"{config.source}: schedules.{name}"
        try:
            catalog.require(sc.task)
        except TqdError as err:
            raise ConfigError(f"{where}.task: {err.message.removeprefix('name: ')}") from None
        try:
            spec = CronSpec(sc.cron, sc.timezone)
        except CronError as err:
            raise ConfigError(f"{where}.cron: {err}") from None
        try:
            payload = orjson.dumps(sc.payload)
        except orjson.JSONEncodeError as err:
            raise ConfigError(f"{where}.payload: not JSON: {err}") from None
        schedule = Schedule(name, spec, sc.task, payload, sc.queue, sc.priority, sc.catch_up, sc)
        try:
            catalog.build(schedule.new_task(None), 0.0)  # e.g. a queue the task may not use
        except TqdError as err:
            raise ConfigError(f"{where}: {err.message}") from None
        out[name] = schedule
    return out


class Cron(Role):
    """Fires cron schedules (see the module docstring)."""

    name = "cron"

    def __init__(
        self,
        storage: Storage,
        catalog: Catalog,
        schedules: Mapping[str, Schedule],
        clock: Clock,
        *,
        grace: float = 10.0,
    ) -> None:
        super().__init__(clock, MAX_SLEEP)
        self.storage = storage
        self.catalog = catalog
        self.schedules = dict(schedules)
        self.grace = grace
        #: Per schedule: every instant up to this time has been dealt with.
        self._cursor: dict[str, float] = {}
        self._started = False
        #: Firings whose enqueue failed: (schedule, instant, task), sent
        #: again each round until the store takes them.
        self._unsent: list[tuple[str, float, Task]] = []
        #: Firings whose task this process created, for tests and logs.
        self.fired = 0

    def apply(self, catalog: Catalog, schedules: Mapping[str, Schedule], grace: float) -> None:
        """Use a reloaded configuration: a new or changed schedule starts
        from the time of the next round (nothing before it is made up)."""
        for name, new in schedules.items():
            old = self.schedules.get(name)
            if old is None or old.config != new.config:
                self._cursor.pop(name, None)
        self.catalog = catalog
        self.schedules = dict(schedules)
        self.grace = grace
        self.wake()

    def next_fire_at(self, name: str, now: float) -> float | None:
        """When schedule ``name`` fires next after ``now``."""
        return self.schedules[name].spec.next_after(now)

    async def trigger(self, name: str, now: float) -> EnqueueResult:
        """Enqueue schedule ``name``'s task now, besides its instants
        (recorded as no instant). NotFound for an unknown schedule."""
        schedule = self.schedules.get(name)
        if schedule is None:
            known = ", ".join(sorted(self.schedules)) or "none are configured"
            raise NotFound(f"no schedule named {name!r} (schedules: {known})")
        task = self.catalog.build(schedule.new_task(None), now)
        [result] = await self.storage.enqueue([task])
        log.info("schedule %s triggered by hand: task %s", name, result.task.id)
        return result

    async def run_once(self, now: float) -> float | None:
        if self._unsent:
            await self._send_unsent(now)
        if not self._started:
            self._start(await self.storage.firings(), now)
        for schedule in list(self.schedules.values()):
            await self._round(schedule, now)
        upcoming = [
            at for s in self.schedules.values() if (at := s.spec.next_after(now)) is not None
        ]
        delay = max(0.001, min(upcoming) - now) if upcoming else None
        if self._unsent:
            delay = min(delay or 1.0, 1.0)
        return delay

    def _start(self, firings: Mapping[str, Firing], now: float) -> None:
        for name in self.schedules:
            fired = firings.get(name)
            # Never fired: nothing before this start is owed.
            self._cursor[name] = fired.instant if fired is not None else now
        self._started = True

    async def _round(self, schedule: Schedule, now: float) -> None:
        name = schedule.name
        cursor = self._cursor.setdefault(name, now)
        late_before = now - self.grace
        if cursor < late_before:
            missed = schedule.spec.latest_at_or_before(late_before)
            if missed is not None and missed > cursor:
                if schedule.catch_up:
                    log.info("schedule %s: making up the latest missed firing (%s)",
                             name, rfc3339(missed))
                    await self._fire(schedule, missed, now)
                else:
                    log.info("schedule %s: firings up to %s were missed and are skipped "
                             "(catch_up is off)", name, rfc3339(missed))
            cursor = late_before
        for instant in schedule.spec.between(cursor, now):
            await self._fire(schedule, instant, now)
            self._cursor[name] = instant
        self._cursor[name] = now

    async def _fire(self, schedule: Schedule, instant: float, now: float) -> None:
        task = self.catalog.build(schedule.new_task(instant), now)
        try:
            await self._store(schedule.name, instant, task, now)
        except Exception as err:
            log.warning("schedule %s: storing the task of %s failed (%s); trying again",
                        schedule.name, rfc3339(instant), err)
            self._unsent.append((schedule.name, instant, task))

    async def _store(self, name: str, instant: float, task: Task, now: float) -> None:
        """Enqueue the firing's task (idempotent by its key), then record the firing."""
        [result] = await self.storage.enqueue([task])
        if result.created:
            self.fired += 1
        recorded = await self.storage.claim_firing(name, instant, now)
        if result.created and not recorded:
            # A later instant was recorded first, yet this one's task was new:
            # its task had been deleted, or this process runs far behind.
            log.warning("schedule %s: enqueued the task of %s after a later firing was "
                        "recorded (task %s)", name, rfc3339(instant), result.task.id)

    async def _send_unsent(self, now: float) -> None:
        unsent, self._unsent = self._unsent, []
        for i, (name, instant, task) in enumerate(unsent):
            try:
                await self._store(name, instant, task, now)
            except Exception:
                self._unsent.extend(unsent[i:])
                raise
