"""/metrics: Prometheus text that a Prometheus parser reads, and counters that move."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401
from tests.storage.redis.waiting import eventually


async def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}, parsed by prometheus-client."""
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


async def test_task_counters_and_histograms_move_as_tasks_run(start_tqd):
    tqd = await start_tqd(defaults={"backoff_base": 0.01, "max_attempts": 2})
    async with aiohttp.ClientSession(base_url=tqd.url) as http:
        for body in ({"name": "tqd.echo", "payload": 1}, {"name": "tqd.echo"},
                     {"name": "tqd.fail", "payload": {"retry": True}}, {"name": "tqd.noop",
                                                                        "queue": "other"}):
            async with http.post("/v1/tasks", json=body) as resp:
                assert resp.status == 201
        # the same idempotency key twice is one enqueue
        for _ in range(2):
            async with http.post("/v1/tasks", json={"name": "tqd.noop", "idempotency_key": "k"}):
                pass

    async def settled():
        m = await scrape(tqd.url)
        done = value(m, "tqd_tasks_completed_total", queue="default", name="tqd.echo") == 2
        return done and value(m, "tqd_tasks_failed_total", queue="default", name="tqd.fail") and m

    m = await eventually(settled)
    assert value(m, "tqd_tasks_enqueued_total", queue="default", name="tqd.echo") == 2
    assert value(m, "tqd_tasks_enqueued_total", queue="default", name="tqd.noop") == 1
    assert value(m, "tqd_tasks_enqueued_total", queue="other", name="tqd.noop") == 1
    assert value(m, "tqd_tasks_retried_total", queue="default", name="tqd.fail") == 1
    assert value(m, "tqd_tasks_failed_total", queue="default", name="tqd.fail") == 1
    assert value(m, "tqd_tasks_reclaimed_total", queue="default", name="tqd.fail") == 0
    # 2 echo + 1 noop + the first attempt of fail measured; the retry is measured from its run_at
    assert value(m, "tqd_task_latency_seconds_count", queue="default") == 5
    assert value(m, "tqd_task_latency_seconds_bucket", queue="default", le="+Inf") == 5
    assert value(m, "tqd_task_duration_seconds_count", queue="default", name="tqd.echo") == 2
    assert value(m, "tqd_task_duration_seconds_count", queue="default", name="tqd.fail") == 2
    assert value(m, "tqd_queue_depth", queue="default", state="completed") == 3
    assert value(m, "tqd_queue_depth", queue="default", state="failed") == 1
    assert value(m, "tqd_storage_up") == 1
    assert value(m, "tqd_build_info", version=__import__("tqd").__version__) == 1
    assert value(m, "process_start_time_seconds") > 1.6e9
    assert ("tqd_lease_reclaims_total", ()) in m and ("tqd_storage_errors_total", ()) in m


async def test_queue_depth_comes_from_the_store(tqd, http):
    async with http.post("/v1/queues/held/pause"):
        pass
    for _ in range(3):
        async with http.post("/v1/tasks", json={"name": "tqd.noop", "queue": "held"}):
            pass
    m = await scrape(tqd.url)
    assert value(m, "tqd_queue_depth", queue="held", state="pending") == 3
    assert value(m, "tqd_queue_paused", queue="held") == 1
    assert value(m, "tqd_queue_paused", queue="default") == 0


async def test_http_requests_are_counted_by_route_template(tqd, http):
    async with http.get("/v1/tasks/nope1"), http.get("/v1/tasks/nope2"), http.get("/no/such"):
        pass
    async with http.post("/v1/tasks", json={"name": "tqd.noop"}):
        pass
    m = await scrape(tqd.url)
    assert value(m, "tqd_http_requests_total", route="/v1/tasks/{id}", method="GET",
                 status="404") == 2
    assert value(m, "tqd_http_requests_total", route="/v1/tasks", method="POST", status="201") == 1
    assert value(m, "tqd_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert value(m, "tqd_http_request_duration_seconds_count", route="/v1/tasks/{id}",
                 method="GET") == 2
    assert not any("nope" in str(labels) for _, labels in m)


async def test_a_redis_deployment_counts_work_where_it_was_done(start_tqd, redis_server,  # noqa: F811
                                                                 redis_prefix):  # noqa: F811
    """API-only process A enqueues, worker process B runs: each counts its own
    work (sum them in Prometheus); both report the whole queue from the store."""
    shared = {"storage": redis_server.url, "redis": {"prefix": redis_prefix}}
    api = await start_tqd(worker={"enabled": False}, **shared)
    worker = await start_tqd(**shared)
    async with aiohttp.ClientSession() as http:
        for _ in range(4):
            async with http.post(api.url + "/v1/tasks", json={"name": "tqd.noop"}) as resp:
                assert resp.status == 201

    async def done():
        # The counter moves when a handler ends; the depth once the outcome
        # is stored (a moment later): wait for both.
        m = await scrape(worker.url)
        counted = value(m, "tqd_tasks_completed_total", queue="default", name="tqd.noop") == 4
        stored = value(m, "tqd_queue_depth", queue="default", state="completed") == 4
        return counted and stored and m

    by_worker = await eventually(done)
    by_api = await scrape(api.url)
    labels = {"queue": "default", "name": "tqd.noop"}
    assert value(by_api, "tqd_tasks_enqueued_total", **labels) == 4
    assert value(by_worker, "tqd_tasks_enqueued_total", **labels) == 0
    assert value(by_api, "tqd_tasks_completed_total", **labels) == 0
    for m in (by_api, by_worker):
        assert value(m, "tqd_queue_depth", queue="default", state="completed") == 4


def test_a_large_scrape_is_gzipped_when_asked(tmp_path):
    """Prometheus sends Accept-Encoding: gzip; a large page goes compressed."""
    import gzip
    import urllib.request

    from tests.helpers.daemon import Daemon

    with Daemon(f"sqlite://{tmp_path}/tqd.db") as tqd:
        for i in range(40):
            assert tqd.call("POST", f"/v1/queues/q{i}/pause")[0] == 200
        req = urllib.request.Request(tqd.url + "/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            text = gzip.decompress(resp.read()).decode()
        assert 'tqd_queue_paused{queue="q39"} 1' in text
