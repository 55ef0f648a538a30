"""Tokens rotate with a reload (SIGHUP) and no restart; a reload that would
leave tqd open beyond loopback without tokens is refused."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers.daemon import Daemon, wait_until

from .conftest import TOKENS
from .test_serve import get, tokens_toml


def _reloads(daemon: Daemon, word: str, n: int) -> None:
    wait_until(lambda: sum(word in ln for ln in daemon.stderr_lines) >= n, timeout=20,
               message=f"{word} #{n}")


def test_tokens_rotate_on_sighup(tmp_path: Path) -> None:
    config = tmp_path / "tqd.toml"
    config.write_text(tokens_toml("read"))
    with Daemon(f"sqlite://{tmp_path}/t.db", config=config) as d:
        assert get(d.url + "/v1/queues", TOKENS["read"])[0] == 200
        assert get(d.url + "/v1/queues", TOKENS["admin"])[0] == 401
        config.write_text(tokens_toml("admin"))
        d.signal(signal.SIGHUP)
        _reloads(d, "reloaded", 1)
        assert get(d.url + "/v1/queues", TOKENS["read"])[0] == 401
        assert get(d.url + "/v1/queues", TOKENS["admin"])[0] == 200
        assert "tokens" in [ln for ln in d.stderr_lines if "reloaded" in ln][-1]
        assert d.stop() == 0


def test_removing_every_token_beyond_loopback_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "tqd.toml"
    config.write_text(tokens_toml("read"))
    with Daemon(f"sqlite://{tmp_path}/t.db", config=config, listen="0.0.0.0:0") as d:
        url = "http://127.0.0.1:" + d.url.rsplit(":", 1)[1]
        config.write_text("")
        d.signal(signal.SIGHUP)
        _reloads(d, "reload refused", 1)
        assert "it removes every token while tqd listens on 0.0.0.0:0" in d.stderr
        assert get(url + "/v1/queues")[0] == 401
        assert get(url + "/v1/queues", TOKENS["read"])[0] == 200
        assert d.stop() == 0
