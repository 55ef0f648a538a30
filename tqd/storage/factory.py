"""Build the Storage a URL names."""

from __future__ import annotations

from tqd.config import REDIS_SCHEMES, Config, RedisConfig, sqlite_path
from tqd.errors import ConfigError
from tqd.storage.base import Storage


def create_storage(url: str, config: Config | None = None) -> Storage:
    """A closed Storage for ``url``; call ``open()`` before use."""
    scheme = url.partition("://")[0]
    if scheme == "sqlite":
        from tqd.storage.sqlite import SqliteStorage

        sqlite = config.sqlite if config is not None else None
        return SqliteStorage(
            sqlite_path(url),
            synchronous=sqlite.synchronous if sqlite else "full",
            max_group=sqlite.max_group if sqlite else 2000,
        )
    if scheme in REDIS_SCHEMES:
        from tqd.storage.redis import RedisStorage

        redis = config.redis if config is not None else RedisConfig()
        return RedisStorage(
            url,
            prefix=redis.prefix,
            refuse_eviction=redis.refuse_eviction,
            ssl_ca_certs=redis.ssl_ca_certs,
            ssl_certfile=redis.ssl_certfile,
            ssl_keyfile=redis.ssl_keyfile,
        )
    raise ConfigError(f"storage: unsupported storage scheme {scheme!r}")
