"""Processes sharing the store: register, refresh, expire, unregister."""

from __future__ import annotations

from tqd.models import WorkerInfo


def _info(worker_id: str, **kwargs) -> WorkerInfo:
    fields = {"host": "h1", "pid": 42, "version": "0.1.0", "started_at": 1.0, "concurrency": 8}
    return WorkerInfo(id=worker_id, **{**fields, **kwargs})


async def test_no_workers_at_first(storage, clock):
    assert await storage.workers(clock.now()) == []


async def test_a_registered_worker_is_listed_as_given(storage, clock):
    info = _info("h1:42", running=["t1", "t2"], last_heartbeat=clock.now())
    await storage.register_worker(info, ttl=30, now=clock.now())
    assert await storage.workers(clock.now()) == [info]


async def test_a_registration_expires_after_its_ttl(storage, clock):
    await storage.register_worker(_info("a"), ttl=30, now=clock.now())
    assert [w.id for w in await storage.workers(clock.advance(29))] == ["a"]
    assert await storage.workers(clock.advance(2)) == []


async def test_refreshing_replaces_the_info_and_the_expiry(storage, clock):
    await storage.register_worker(_info("a", running=["t1"]), ttl=30, now=clock.now())
    clock.advance(20)
    fresh = _info("a", running=["t2", "t3"], last_heartbeat=clock.now())
    await storage.register_worker(fresh, ttl=30, now=clock.now())
    assert await storage.workers(clock.advance(20)) == [fresh]  # 40 s after the first


async def test_unregister_forgets_only_that_worker(storage, clock):
    await storage.register_worker(_info("a"), ttl=30, now=clock.now())
    await storage.register_worker(_info("b", host="h2"), ttl=30, now=clock.now())
    await storage.unregister_worker("a")
    assert [w.id for w in await storage.workers(clock.now())] == ["b"]
    await storage.unregister_worker("a")  # twice is harmless
    await storage.unregister_worker("never-registered")
    assert [w.id for w in await storage.workers(clock.now())] == ["b"]


async def test_every_live_worker_is_listed(storage, clock):
    for i in range(3):
        await storage.register_worker(_info(f"w{i}", pid=i), ttl=10 * (i + 1), now=clock.now())
    listed = await storage.workers(clock.advance(15))
    assert sorted(w.id for w in listed) == ["w1", "w2"]
