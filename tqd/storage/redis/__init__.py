"""The shared Redis (or Valkey) store, for several tqd processes at once."""

from tqd.storage.redis.backend import RedisStorage

__all__ = ["RedisStorage"]
