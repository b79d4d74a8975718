"""How this process talks to Redis: the client options every connection of it uses.

The app's client (`server.app.redis_context`, read by presence, budgets, live
calls and the health check) and Socket.IO's channel between processes
(`handlers.sio.notifier.RedisManager`) connect with the same options.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from server.config import ConfigError

# Commands give up fast when Redis is away (one retry, for a pooled connection Redis closed when it
# restarted), so an emit never holds a handler for long. The listener blocks on reads without a timeout.
REDIS_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 2.0,
    "retry": Retry(NoBackoff(), 1),
    "health_check_interval": 15,
}


def redis_client(url: str, **options: Any) -> aioredis.Redis:
    """A client for `url` with `REDIS_OPTIONS` (`options` override them); a URL redis-py cannot read is a
    configuration error naming the key, whoever opens it first."""
    try:
        return aioredis.Redis.from_url(url, **{**REDIS_OPTIONS, **options})
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: redis.url: {exc}") from None
