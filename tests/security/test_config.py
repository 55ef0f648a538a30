"""Configuration of tokens, TLS and CORS: every mistake named with its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tqd.config import load_config
from tqd.errors import ConfigError
from tqd.exposure import check_exposure, is_loopback
from tqd.tokens import hash_token

GOOD_HASH = hash_token("tqd_some-token-000000000000000")


def load(**overrides: Any):
    return load_config(None, env={}, overrides=overrides, check_paths=False)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"tokens": [{"name": "ci", "hash": "0123", "scope": "read"}]},
     "tokens[0].hash: expected `str` matching regex"),
    ({"tokens": [{"name": "ci", "hash": GOOD_HASH, "scope": "root"}]},
     "tokens[0].scope: invalid enum value 'root'"),
    ({"tokens": [{"name": "ci", "token": "tqd_x", "hash": GOOD_HASH, "scope": "read"}]},
     "tokens[0].token: unknown key"),
    ({"tokens": [{"name": "ci", "hash": GOOD_HASH, "scope": "read"},
                 {"name": "ci", "hash": hash_token("tqd_other-000000000000000000"), "scope": "read"}]},
     "tokens[1].name: 'ci' is used by another token"),
    ({"tokens": [{"name": "a", "hash": GOOD_HASH, "scope": "read"},
                 {"name": "b", "hash": GOOD_HASH, "scope": "admin"}]},
     "tokens[1].hash: the same token is configured twice"),
    ({"tls": {"cert": "/etc/tqd/cert.pem"}}, "tls.key: missing (TLS needs both cert and key)"),
    ({"api": {"cors_origins": ["http://app.example/"]}},
     "api.cors_origins[0]: expected scheme://host[:port]"),
    ({"api": {"cors_origins": ["app.example"]}}, "api.cors_origins[0]: expected scheme://host[:port]"),
])
def test_mistakes_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(**overrides)
    assert message in err.value.message, err.value.message
    assert err.value.message.startswith("defaults: ")


def test_good_settings_load(tmp_path: Path) -> None:
    config = load(tokens=[{"name": "ci", "hash": GOOD_HASH, "scope": "write"}],
                  api={"cors_origins": ["https://app.example", "http://[::1]:5173", "*"]})
    assert config.tokens[0].scope == "write"
    assert config.api.cors_origins[1] == "http://[::1]:5173"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("tqd.example.com", False), ("localhost.example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_exposure() -> None:
    check_exposure(load(listen="127.0.0.1:7411"))
    check_exposure(load(listen="[::1]:7411"))
    with pytest.raises(ConfigError, match="not a loopback address"):
        check_exposure(load(listen="[::]:7411"))
    check_exposure(load(listen="0.0.0.0:7411"), insecure_no_auth=True)
    check_exposure(load(listen="0.0.0.0:7411",
                        tokens=[{"name": "ci", "hash": GOOD_HASH, "scope": "read"}]))


def test_limits_have_defaults_and_bounds() -> None:
    api = load().api
    assert (api.max_depth, api.header_timeout, api.body_timeout) == (32, 15.0, 30.0)
    with pytest.raises(ConfigError, match=r"api.max_depth: expected `int` <= 254"):
        load(api={"max_depth": 255})
    with pytest.raises(ConfigError, match=r"api.header_timeout: expected `float` > 0.0"):
        load(api={"header_timeout": 0})
