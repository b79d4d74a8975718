"""How this process talks to Redis: the client options every connection of it uses.

The app's client (`server.app.redis_context`, read by presence, budgets, live
calls and the health check) and Socket.IO's channel between processes
(`handlers.sio.notifier.RedisManager`) connect with the same options.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# Commands give up fast when Redis is away (one retry, for a pooled connection Redis closed when it
# restarted), so an emit never holds a handler for long. The listener blocks on reads without a timeout.
REDIS_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 2.0,
    "retry": Retry(NoBackoff(), 1),
    "health_check_interval": 15,
}
