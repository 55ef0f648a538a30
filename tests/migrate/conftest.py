from tests.helpers.redis_server import redis_prefix, redis_server  # noqa: F401
