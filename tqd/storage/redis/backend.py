"""The shared store: Redis 7 or Valkey, for several tqd processes at once.

Every operation is one Lua script per queue (scripts.py) over the keys of
keys.py, sent as one round trip even when it spans queues (a pipeline; a
MULTI/EXEC for an enqueue batch over several queues). Change events come
back from each script for this process and reach the others by pub/sub
(events.py).

Failures: connection errors and timeouts raise StorageUnavailable at once.
A command is retried once after a ConnectionError (a pooled connection the
server closed, as after a restart), never after a timeout; if the server
dies after running a script but before answering, that one retry can run it
again: an enqueue then finds its own tasks stored and reports them created
(see _stored_already), a settle reports a stale token. The subscriber reconnects with capped backoff by itself.

Differences from the SQLite store, none of which the contract promises
either way:

* FIFO among equal priorities and listing order follow task ids (creation
  time, to the millisecond across processes) rather than insertion order.
* Idempotency keys and task ids are unique per queue (their records live in
  the queue's hash slot); tqd's ids never collide across queues in practice.
* An enqueue batch that spans queues is one MULTI/EXEC: atomic on one Redis,
  but Redis Cluster refuses it (CROSSSLOT), and a duplicate id in one queue
  (practically impossible) leaves the other queues' part stored.
* Changes published while this process was not subscribed are lost; after
  resubscribing it emits ``Change("", queue, "", "pending")`` for every
  queue holding pending tasks, so waiting workers look again.
"""

from __future__ import annotations

import logging
import math
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson
from redis.exceptions import AuthenticationError, ResponseError

from tqd.errors import BadRequest, ConfigError, Conflict, NotFound, StorageUnavailable, safe_url
from tqd.ids import is_valid_id
from tqd.models import (
    Change,
    Firing,
    Outcome,
    ProgressReport,
    QueueChange,
    QueueInfo,
    QueueLimits,
    StatsBucket,
    Task,
    WorkerInfo,
    progress_json,
    rfc3339,
    zero_counts,
)
from tqd.storage.base import SHARED, EnqueueResult, Leased, Page, Storage
from tqd.storage.redis import stats as redis_stats
from tqd.storage.redis.batcher import EnqueueBatcher
from tqd.storage.redis.client import (
    DOWN,
    Breaker,
    ScriptClient,
    StateConflict,
    connect,
)
from tqd.storage.redis.codec import decode_event, decode_task, pairs, task_fields
from tqd.storage.redis.events import Subscriber
from tqd.storage.redis.keys import DEFAULT_PREFIX, Keys, token_queue

log = logging.getLogger("tqd.storage.redis")

#: Scripts that change nothing anyone listens to: they return no message.
_QUIET = frozenset({"LIST_IDS", "EXTEND", "PROGRESS"})
#: A unique key outlives its task's unique_until by this much in Redis (its
#: expiry runs on Redis's clock); the script compares unique_until itself.
_UNIQUE_SLACK_MS = 60_000
_KIND = {"complete": b"c", "fail": b"f", "release": b"r"}


def _num(value: float) -> str:
    return repr(float(value))


def _limit_args(limits: QueueLimits) -> list[str]:
    """The SET_LIMITS fields of ``limits``: '' for unset (rate_interval: for 1)."""

    def opt(value: int | None) -> str:
        return "" if value is None else str(value)

    interval = "" if limits.rate_interval == 1.0 else _num(limits.rate_interval)
    return [opt(limits.concurrency), opt(limits.rate_limit), interval, opt(limits.rate_burst),
            opt(limits.group_concurrency)]


def _unique_arg(t: Task) -> str:
    """The ENQUEUE script's unique argument: '' or "<ms> <created_at> <key>"."""
    if t.unique_key is None or t.unique_until is None or t.state not in ("pending", "scheduled"):
        return ""
    ms = max(0, math.ceil((t.unique_until - t.created_at) * 1000)) + _UNIQUE_SLACK_MS
    return f"{ms} {_num(t.created_at)} {t.unique_key}"


def _index_time(t: Task) -> str:
    """The score of a new task in its state's time index ('' when pending).

    A task stored in a later state (``tqd migrate`` copies any) that lacks
    the time of its state is indexed by its creation time."""
    if t.state == "pending":
        return ""
    at = {"scheduled": t.run_at, "processing": t.lease_expires_at}.get(t.state, t.finished_at)
    return _num(t.created_at if at is None else at)


class RedisStorage(Storage):
    """The Storage contract on Redis (see the module docstring and keys.py)."""

    kind = "redis"
    capabilities = frozenset({SHARED})

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        refuse_eviction: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        client: Any = None,
    ) -> None:
        """``client`` replaces the connection made from ``url`` (tests pass a
        fakeredis client); it must be a redis.asyncio-compatible client."""
        super().__init__()
        self.url = url
        self.keys = Keys(prefix)
        self.refuse_eviction = refuse_eviction
        self._ssl = {
            k: v
            for k, v in (
                ("ssl_ca_certs", ssl_ca_certs),
                ("ssl_certfile", ssl_certfile),
                ("ssl_keyfile", ssl_keyfile),
            )
            if v is not None
        }
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._given = client
        self._r: Any = None
        self._scripts: ScriptClient | None = None
        self._breaker: Breaker | None = None
        #: Queues this handle put in the registry (see _run and _resync).
        self._registered: set[str] = set()
        self._batcher = EnqueueBatcher(self._enqueue_now)
        self._sub: Subscriber | None = None
        self._sub_client: Any = None
        self._origin = uuid.uuid4().hex[:16]
        self._own_prefix = self._origin.encode() + b" "
        #: The Redis server version, once open.
        self.server_version = ""

    # -- life ---------------------------------------------------------------

    def _client(self, *, blocking: bool) -> Any:
        if self._given is not None:
            return self._given
        return connect(
            self.url,
            connect_timeout=self._connect_timeout,
            # the subscriber's reads wait for messages as long as it takes
            socket_timeout=None if blocking else self._socket_timeout,
            ssl=self._ssl,
            subscriber=blocking,
        )

    async def open(self) -> None:
        self._r = self._client(blocking=False)
        try:
            info = await self._r.info("server")
        except AuthenticationError as err:
            raise ConfigError(f"storage: Redis refused the credentials: {err}") from None
        except DOWN as err:
            await self._r.aclose()
            raise StorageUnavailable(f"storage: cannot reach Redis: {err}") from None
        except ResponseError as err:
            if "DB index" in str(err):
                # The SELECT of the URL's database, sent as the connection opens.
                await self._r.aclose()
                raise ConfigError(
                    f"storage: Redis refused the database of {safe_url(self.url)}: {err}"
                ) from None
            info = {}  # a stand-in such as fakeredis, or INFO renamed away
        self.server_version = str(info.get("valkey_version") or info.get("redis_version") or "?")
        log.info("storage: Redis %s at %s", self.server_version, safe_url(self.url))
        await self._check_eviction()
        major = self.server_version.split(".")[0]
        self._breaker = Breaker(self._r.ping, probe_timeout=min(1.0, self._socket_timeout))
        self._scripts = ScriptClient(
            self._r, shebang=major.isdigit() and int(major) >= 7, breaker=self._breaker
        )
        await self._scripts.load()
        sub_client = self._given if self._given is not None else self._client(blocking=True)
        self._sub_client = sub_client
        self._sub = Subscriber(sub_client, self.keys.events, self._on_event, self._resync)
        if not await self._sub.start(wait=self._connect_timeout + self._socket_timeout):
            await self.close()
            raise StorageUnavailable("storage: cannot subscribe to Redis events")

    async def _check_eviction(self) -> None:
        try:
            policy = (await self._r.config_get("maxmemory-policy")).get("maxmemory-policy")
        except ResponseError as err:
            log.info("storage: cannot read maxmemory-policy (%s); make sure it is noeviction", err)
            return
        if policy in (None, "noeviction", b"noeviction"):
            return
        policy = policy.decode() if isinstance(policy, bytes) else policy
        message = (
            f"storage: Redis maxmemory-policy is {policy!r}; Redis may silently delete "
            "tasks when full (set it to noeviction)"
        )
        if self.refuse_eviction:
            await self._r.aclose()
            raise ConfigError(message)
        log.warning(message)

    async def close(self) -> None:
        if self._breaker is not None:
            await self._breaker.close()
        if self._sub is not None:
            await self._sub.stop()
            self._sub = None
            if self._sub_client is not self._given:
                await self._sub_client.aclose()
        if self._r is not None and self._r is not self._given:
            await self._r.aclose()
        self._r = self._scripts = None

    async def ping(self) -> None:
        await self._guard(self._redis().ping())

    # -- plumbing -----------------------------------------------------------

    def _redis(self) -> Any:
        if self._r is None:
            raise StorageUnavailable("storage: the Redis store is not open")
        return self._r

    def _guard(self, awaitable: Any) -> Any:
        """Await a plain Redis call through the breaker (see client.py)."""
        if self._breaker is None:
            if hasattr(awaitable, "close"):
                awaitable.close()
            raise StorageUnavailable("storage: the Redis store is not open")
        return self._breaker.call(awaitable)

    def _qargs(self, queue: str, args: Sequence[Any]) -> list[Any]:
        return [self.keys.queue_prefix(queue), queue, self.keys.events, self._origin, *args]

    async def _run(
        self,
        calls: Sequence[tuple[str, str, Sequence[Any]]],
        *,
        transaction: bool = False,
        register: Sequence[str] = (),
    ) -> list[Any]:
        """Run queue scripts ``(name, queue, args)`` in one round trip.

        ``register`` names queues to add to the registry first (those this
        handle has not added yet). Emits the changes the scripts report, once
        all of them ran.
        """
        if self._scripts is None:
            raise StorageUnavailable("storage: the Redis store is not open")
        new = [q for q in register if q not in self._registered]
        results = await self._scripts.run(
            [(n, [self.keys.counts(q)], self._qargs(q, a)) for n, q, a in calls],
            transaction=transaction,
            before=[("SADD", [self.keys.queues, *new])] if new else (),
        )
        self._registered.update(new)
        changes: list[Change | QueueChange] = []
        for (name, _, _), res in zip(calls, results, strict=True):
            if name not in _QUIET and res[1]:
                # the script's name is the operation (Change.op) of our own changes
                changes.extend(decode_event(res[1], name.lower())[1])
        self._emit(changes)
        return results

    async def _run1(self, name: str, queue: str, *args: Any) -> Any:
        return (await self._run([(name, queue, args)]))[0]

    def _on_event(self, message: bytes) -> None:
        if message.startswith(self._own_prefix):
            return  # this process emitted its own changes when its script returned
        self._emit(decode_event(message)[1])

    async def _resync(self) -> None:
        """After the subscription came back (Redis may have restarted): put the
        queues this handle registered back in the registry, in case the
        restart lost it, and wake whoever waits on a queue with work."""
        if self._registered:
            await self._guard(self._redis().sadd(self.keys.queues, *self._registered))
        infos = await self._infos(await self._queue_names())
        self._emit([Change("", q.name, "", "pending") for q in infos if q.counts.get("pending")])

    async def _queue_names(self) -> list[str]:
        names = await self._guard(self._redis().smembers(self.keys.queues))
        return sorted(n.decode() for n in names)

    async def _infos(self, names: Sequence[str]) -> list[QueueInfo]:
        """These queues as QueueInfo, in one round trip: their counts hashes
        (which hold the limits too, see _queue_info) and paused flags."""
        pipe = self._redis().pipeline(transaction=False)
        for q in names:
            pipe.hgetall(self.keys.counts(q))
            pipe.exists(self.keys.paused(q))
        out = await self._guard(pipe.execute())
        return [_queue_info(q, out[2 * i], bool(out[2 * i + 1])) for i, q in enumerate(names)]

    async def _find(self, task_id: str) -> tuple[str, dict[bytes, bytes]] | None:
        """The queue and the fields of a task, looked up in every queue."""
        names = await self._queue_names()
        pipe = self._redis().pipeline(transaction=False)
        for q in names:
            pipe.hgetall(self.keys.task(q, task_id))
        found = await self._guard(pipe.execute())
        for q, fields in zip(names, found, strict=True):
            if fields:
                return q, fields
        return None

    async def _queue_of(self, task_id: str) -> str:
        found = await self._find(task_id)
        if found is None:
            raise NotFound(f"no task with id {task_id!r}")
        return found[0]

    async def _due(
        self, index: str, high: str, limit: int, script: str, make_args: Any
    ) -> tuple[list[str], list[Any]]:
        """Run ``script`` on the queues whose ``index`` holds entries up to
        ``high``, splitting ``limit`` among them (``make_args(share)`` gives a
        queue's arguments): one round trip to count, one to act (none when
        nothing is due). Returns the queues acted on and their results."""
        names = await self._queue_names()
        pipe = self._redis().pipeline(transaction=False)
        for q in names:
            pipe.zcount(self.keys.time_index(q, index), "-inf", high)
        counts = await self._guard(pipe.execute())
        calls = []
        left = limit
        for q, n in zip(names, counts, strict=True):
            if n and left > 0:
                take = min(n, left)
                calls.append((script, q, make_args(take)))
                left -= take
        if not calls:
            return [], []
        return [c[1] for c in calls], await self._run(calls)

    # -- producing and consuming --------------------------------------------

    async def _enqueue(self, tasks: Sequence[Task]) -> list[EnqueueResult]:
        queue = tasks[0].queue
        if all(t.queue == queue for t in tasks):
            return await self._batcher.submit(queue, tasks)
        return await self._enqueue_now(tasks)

    async def _enqueue_now(self, tasks: Sequence[Task]) -> list[EnqueueResult]:
        """One round trip: one script per queue (a MULTI/EXEC over several)."""
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            groups.setdefault(t.queue, []).append(i)
        calls = []
        for queue, idxs in groups.items():
            args: list[Any] = [len(idxs)]
            for i in idxs:
                t = tasks[i]
                fields = task_fields(t)
                args += [t.id, t.idempotency_key or "", t.state, t.name, str(t.priority)]
                args += [_index_time(t), _unique_arg(t), t.group or "", len(fields) // 2, *fields]
            calls.append(("ENQUEUE", queue, args))
        # A queue goes into the registry with its first batch from this
        # handle (an SADD in the same round trip); after a Redis restart,
        # which the subscriber notices, _resync puts every one back.
        try:
            results = await self._run(calls, transaction=len(calls) > 1, register=list(groups))
        except Conflict:
            if await self._stored_already(tasks):
                return [EnqueueResult(t, True) for t in tasks]
            raise
        out: list[EnqueueResult | None] = [None] * len(tasks)
        by_id = {t.id: t for t in tasks}
        for (queue, idxs), (items, _) in zip(groups.items(), results, strict=True):
            for i, item in zip(idxs, items, strict=True):
                if item == 1:
                    out[i] = EnqueueResult(tasks[i], True)
                elif len(item) == 1:
                    out[i] = EnqueueResult(by_id[item[0].decode()], False)
                else:
                    out[i] = EnqueueResult(
                        decode_task(item[0].decode(), queue, pairs(item[1:])), False
                    )
        return out  # type: ignore[return-value]

    async def _stored_already(self, tasks: Sequence[Task]) -> bool:
        """Whether every task of a refused batch is stored exactly as given.

        A command is sent again once after a dropped connection; if Redis ran
        the script but the answer was lost, the second run finds the batch's
        own ids and refuses it. The batch is then stored, not in conflict.
        """
        pipe = self._redis().pipeline(transaction=False)
        for t in tasks:
            pipe.hmget(self.keys.task(t.queue, t.id), "c", "n", "p")
        found = await self._guard(pipe.execute())
        return all(
            f[0] is not None and float(f[0]) == t.created_at and f[1] == t.name.encode()
            and f[2] == t.payload
            for t, f in zip(tasks, found, strict=True)
        )

    async def _lease(
        self, queue: str, limit: int, worker: str, now: float, visibility: float | None
    ) -> Leased:
        started = _num(now).encode()
        vis = "" if visibility is None else _num(visibility)
        flat, _, limited, retry_in = await self._run1(
            "LEASE", queue, limit, worker, started, secrets.token_hex(6), vis
        )
        tasks = []
        for i in range(0, len(flat), 4):
            fields = pairs(flat[i + 1])
            # the script returns the hash as it was before the lease
            fields[b"s"], fields[b"l"], fields[b"z"] = b"processing", flat[i + 2], flat[i + 3]
            fields[b"g"], fields[b"w"] = started, worker.encode()
            tasks.append(decode_task(flat[i].decode(), queue, fields))
        return Leased(
            tasks, limited=limited.decode() or None, retry_in=float(retry_in) if retry_in else None
        )

    def _by_queue(self, items: Sequence[Any], token_of: Any) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            queue = token_queue(token_of(item) or "")
            if queue is not None:
                groups.setdefault(queue, []).append(i)
        return groups

    async def _extend(
        self, leases: Sequence[tuple[str, str]], now: float, visibility: float | None
    ) -> list[bool]:
        groups = self._by_queue(leases, lambda lease: lease[1])
        vis = "" if visibility is None else _num(visibility)
        calls = []
        for queue, idxs in groups.items():
            args: list[Any] = [_num(now), vis]
            for i in idxs:
                args += leases[i]
            calls.append(("EXTEND", queue, args))
        accepted = [False] * len(leases)
        for idxs, flags in zip(groups.values(), await self._run(calls), strict=True):
            for i, flag in zip(idxs, flags, strict=True):
                accepted[i] = flag == 1
        return accepted

    async def _settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        groups = self._by_queue(outcomes, lambda o: o.token)
        calls = []
        for queue, idxs in groups.items():
            args: list[Any] = [_num(now)]
            for i in idxs:
                o = outcomes[i]
                if o.kind == "complete":
                    data = o.result if o.result is not None else b""
                elif o.kind == "fail":
                    data = orjson.dumps(o.error or {})
                else:
                    data = b""
                retry_at = _num(o.retry_at) if o.kind == "fail" and o.retry_at is not None else ""
                started = _num(o.started_at) if o.started_at is not None else ""
                args += [o.task_id, o.token, _KIND[o.kind], data, retry_at, started]
            calls.append(("SETTLE", queue, args))
        accepted = [False] * len(outcomes)
        for idxs, (flags, _) in zip(groups.values(), await self._run(calls), strict=True):
            for i, flag in zip(idxs, flags, strict=True):
                accepted[i] = flag == 1
        return accepted

    async def _report_progress(self, reports: Sequence[ProgressReport]) -> list[bool]:
        groups = self._by_queue(reports, lambda r: r.token)
        calls = []
        for queue, idxs in groups.items():
            args: list[Any] = []
            for i in idxs:
                r = reports[i]
                args += [r.task_id, r.token, progress_json(r)]
            calls.append(("PROGRESS", queue, args))
        stored = [False] * len(reports)
        if calls:
            for idxs, flags in zip(groups.values(), await self._run(calls), strict=True):
                for i, flag in zip(idxs, flags, strict=True):
                    stored[i] = flag == 1
        return stored

    # -- cron ---------------------------------------------------------------

    async def _claim_firing(self, schedule: str, instant: float, now: float) -> bool:
        if self._scripts is None:
            raise StorageUnavailable("storage: the Redis store is not open")
        args = [schedule, _num(instant), _num(now)]
        [won] = await self._scripts.run([("CLAIM_FIRING", [self.keys.cron_fired], args)])
        return won == 1

    async def firings(self) -> dict[str, Firing]:
        raw = await self._guard(self._redis().hgetall(self.keys.cron_fired))
        out = {}
        for name, value in raw.items():
            instant, _, fired_at = value.decode().partition(" ")
            out[name.decode()] = Firing(float(instant), float(fired_at))
        return out

    # -- background roles ---------------------------------------------------

    def _tasks_of(self, calls_results: list[Any], queues: Sequence[str]) -> list[Task]:
        out = []
        for queue, (flat, _) in zip(queues, calls_results, strict=True):
            out += [
                decode_task(flat[i].decode(), queue, pairs(flat[i + 1]))
                for i in range(0, len(flat), 2)
            ]
        return out

    async def _reclaim_expired(self, now: float, limit: int) -> list[Task]:
        at = rfc3339(now)
        queues, results = await self._due(
            "processing", f"({_num(now)}", limit, "RECLAIM", lambda n: [_num(now), n, "", at]
        )
        return self._tasks_of(results, queues)

    async def _reclaim_worker(self, worker: str, now: float) -> list[Task]:
        names = await self._queue_names()
        calls = [("RECLAIM", q, [_num(now), 0, worker, rfc3339(now)]) for q in names]
        return self._tasks_of(await self._run(calls), names) if calls else []

    async def _promote_due(self, now: float, limit: int) -> int:
        _, results = await self._due(
            "scheduled", _num(now), limit, "PROMOTE", lambda n: [_num(now), n]
        )
        return sum(n for n, _ in results)

    async def next_run_at(self) -> float | None:
        names = await self._queue_names()
        pipe = self._redis().pipeline(transaction=False)
        for q in names:
            pipe.zrange(self.keys.scheduled(q), 0, 0, withscores=True)
        firsts = [found[0][1] for found in await self._guard(pipe.execute()) if found]
        return min(firsts) if firsts else None

    async def _expire_finished(self, state: str, before: float, limit: int) -> int:
        _, results = await self._due(
            state, f"({_num(before)}", limit, "EXPIRE", lambda n: [state, _num(before), n]
        )
        return sum(n for n, _ in results)

    # -- reading ------------------------------------------------------------

    async def get(self, task_id: str) -> Task | None:
        found = await self._find(task_id)
        return None if found is None else decode_task(task_id, found[0], found[1])

    async def _list(
        self, state: str | None, queue: str | None, name: str | None, limit: int, cursor: str | None
    ) -> Page:
        if cursor is not None:
            if not is_valid_id(cursor):
                raise BadRequest("cursor: not a cursor returned by this API")
            cursor = cursor.upper()
        names = [queue] if queue is not None else await self._queue_names()
        args = [state or "", name or "", cursor or "", limit + 1]
        found = await self._run([("LIST_IDS", q, args) for q in names])
        merged = sorted(
            ((i.decode(), q) for q, ids in zip(names, found, strict=True) for i in ids),
            reverse=True,
        )[: limit + 1]
        page = merged[:limit]
        pipe = self._redis().pipeline(transaction=False)
        for task_id, q in page:
            pipe.hgetall(self.keys.task(q, task_id))
        bodies = await self._guard(pipe.execute())
        tasks = [decode_task(i, q, f) for (i, q), f in zip(page, bodies, strict=True) if f]
        return Page(tasks, page[-1][0] if len(merged) > limit else None)

    # -- changing one task --------------------------------------------------

    async def _one(self, script: str, task_id: str, *args: Any) -> Any:
        queue = await self._queue_of(task_id)
        try:
            return queue, await self._run1(script, queue, task_id, *args)
        except NotFound:
            raise NotFound(f"no task with id {task_id!r}") from None
        except StateConflict as err:
            raise Conflict(_CONFLICTS[script].format(id=task_id, state=err.state)) from None

    async def _cancel(self, task_id: str, now: float) -> Task:
        queue, (fields, _) = await self._one("CANCEL", task_id, _num(now))
        return decode_task(task_id, queue, pairs(fields))

    async def _retry(self, task_id: str, now: float) -> Task:
        queue, (fields, _) = await self._one("RETRY", task_id)
        return decode_task(task_id, queue, pairs(fields))

    async def _delete(self, task_id: str) -> None:
        await self._one("DELETE", task_id)

    # -- queues -------------------------------------------------------------

    async def declare_queues(self, names: Sequence[str]) -> None:
        if names:
            await self._guard(self._redis().sadd(self.keys.queues, *names))
            self._registered.update(names)

    async def queues(self) -> list[QueueInfo]:
        return await self._infos(await self._queue_names())

    async def _queue(self, name: str) -> QueueInfo | None:
        if not await self._guard(self._redis().sismember(self.keys.queues, name)):
            return None
        return (await self._infos([name]))[0]

    async def _set_paused(self, name: str, paused: bool) -> None:
        await self._run([("SET_PAUSED", name, ["1" if paused else "0"])], register=[name])

    async def _set_limits(
        self, name: str, limits: QueueLimits, now: float, config_digest: str | None,
        expected: QueueLimits | None,
    ) -> None:
        args = [
            *_limit_args(limits), _num(now), "" if config_digest is None else "=" + config_digest,
            *(["-"] if expected is None else _limit_args(expected)),
        ]
        await self._run([("SET_LIMITS", name, args)], register=[name])

    async def paused_queues(self) -> set[str]:
        return {q.name for q in await self._infos(await self._queue_names()) if q.paused}

    async def _purge(self, queue: str, state: str, limit: int) -> int:
        return (await self._run1("PURGE", queue, state, limit))[0]

    async def _redrive(self, queue: str, now: float, limit: int) -> int:
        return (await self._run1("REDRIVE", queue, limit))[0]

    # -- processes ----------------------------------------------------------

    async def register_worker(self, info: WorkerInfo, ttl: float, now: float) -> None:
        if self._scripts is None:
            raise StorageUnavailable("storage: the Redis store is not open")
        keys = [self.keys.workers_exp, self.keys.workers_info]
        args = [info.id, msgspec.json.encode(info), _num(now + ttl), _num(now)]
        await self._scripts.run([("WORKER_REGISTER", keys, args)])

    async def unregister_worker(self, worker_id: str) -> None:
        pipe = self._redis().pipeline(transaction=True)
        pipe.zrem(self.keys.workers_exp, worker_id)
        pipe.hdel(self.keys.workers_info, worker_id)
        await self._guard(pipe.execute())

    async def workers(self, now: float) -> list[WorkerInfo]:
        r = self._redis()
        ids = await self._guard(r.zrangebyscore(self.keys.workers_exp, f"({_num(now)}", "+inf"))
        if not ids:
            return []
        infos = await self._guard(r.hmget(self.keys.workers_info, sorted(ids)))
        return [msgspec.json.decode(i, type=WorkerInfo) for i in infos if i is not None]

    # -- statistics ---------------------------------------------------------

    async def _record_stats(self, buckets: Sequence[StatsBucket], now: float) -> None:
        if self._scripts is None:
            raise StorageUnavailable("storage: the Redis store is not open")
        await redis_stats.record(self._scripts, self.keys, buckets, now)

    async def _stats(self, step: int, since: int, until: int, queue: str) -> list[StatsBucket]:
        return await redis_stats.read(
            self._redis(), self.keys, step, since, until, queue, guard=self._guard
        )


def _queue_info(name: str, fields: dict[bytes, bytes], paused: bool) -> QueueInfo:
    """A queue from its counts hash: fields named after a state are counts,
    fields starting with ``_`` its settings (scripts.py, LEASE)."""
    counts = zero_counts()
    settings: dict[str, str] = {}
    for k, v in fields.items():
        key = k.decode()
        if key.startswith("_"):
            settings[key] = v.decode()
        else:
            counts[key] = int(v)

    def opt(field: str) -> int | None:
        value = settings.get(field)
        return None if value is None else int(value)

    limits = QueueLimits(
        concurrency=opt("_c"),
        rate_limit=opt("_r"),
        rate_interval=float(settings.get("_i", 1.0)),
        rate_burst=opt("_b"),
        group_concurrency=opt("_gc"),
    )
    return QueueInfo(
        name=name, paused=paused, counts=counts, limits=limits,
        config_digest=settings.get("_d"),
    )  # fmt: skip


_CONFLICTS = {
    "CANCEL": "task {id} is {state}; only pending, scheduled or processing tasks can be cancelled",
    "RETRY": "task {id} is {state}; only failed or cancelled tasks can be retried",
    "DELETE": "task {id} is {state}; cancel it first or wait until it ends",
}
