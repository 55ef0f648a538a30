"""``tqd serve`` on Redis: the [redis] settings reach the store, and start-up
problems are one line with the right exit status."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from redis import Redis

from tests.helpers.daemon import ROOT, Daemon, tqd_env
from tests.helpers.redis_server import free_port, start_server


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tqd", "serve", "--listen", "127.0.0.1:0", *args],
        capture_output=True, text=True, env=tqd_env(), cwd=ROOT, timeout=60,
    )


def test_an_unreachable_redis_stops_the_start_with_one_line():
    out = serve("--storage", f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 3
    errors = [line for line in out.stderr.splitlines() if line.startswith("tqd:")]
    assert errors and "cannot reach Redis" in errors[0]
    assert "Traceback" not in out.stderr


def test_eviction_is_warned_about_or_refused_as_configured(tmp_path: Path):
    server = start_server(tmp_path)
    try:
        Redis(port=server.port).config_set("maxmemory-policy", "allkeys-lru")
        refuse = tmp_path / "refuse.toml"
        refuse.write_text('[redis]\nrefuse_eviction = true\nprefix = "r"\n')
        out = serve("--storage", server.url, "--config", str(refuse))
        assert out.returncode == 2
        assert "maxmemory-policy is 'allkeys-lru'" in out.stderr
        assert "Traceback" not in out.stderr

        warn = tmp_path / "warn.toml"
        warn.write_text('[redis]\nprefix = "custom-prefix"\n')
        with Daemon(server.url, config=warn) as d:
            status, _ = d.call("POST", "/v1/tasks", {"name": "tqd.noop"})
            assert status == 201
        assert re.search(r"Redis \d+\.\d+\.\d+ at redis://127\.0\.0\.1", d.stderr)
        assert "allkeys-lru" in d.stderr and "WARNING" in d.stderr
        # the prefix from the config names every key
        keys = Redis(port=server.port).keys("*")
        assert keys and all(k.startswith(b"custom-prefix:") for k in keys)
    finally:
        server.stop()


def test_the_redis_section_reaches_the_store(tmp_path: Path):
    from tqd.config import load_config
    from tqd.storage.factory import create_storage

    cfg = tmp_path / "tqd.toml"
    cfg.write_text('storage = "rediss://h:6380/0"\n[redis]\nprefix = "p1"\nrefuse_eviction = true\n'
                   'ssl_ca_certs = "/ca.pem"\nssl_certfile = "/c.pem"\nssl_keyfile = "/k.pem"\n')
    config = load_config(str(cfg), env={})
    store = create_storage(config.storage_url, config)
    assert store.keys.prefix == "p1" and store.refuse_eviction
    assert store._ssl == {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem",
                          "ssl_keyfile": "/k.pem"}
