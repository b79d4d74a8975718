"""Budgets of events per key: login failures over a sliding window, event classes as token buckets.

Two interchangeable pairs with one async interface:

- `RateLimiter` and `Budgets` keep the counts in this process (one process, no Redis);
- `RedisRateLimiter` and `RedisBudgets` keep them in Redis, so every process shares
  them. Each operation is one Lua script (atomic in Redis) and reads the clock with
  Redis `TIME`, so processes on machines whose clocks differ still agree.

`RateLimiter`: `retry_after(key, limit, window)`, `hit(key, window)`, `release(key)`,
`reset(key)`, and `hit_if_allowed(limits, window)` which checks several keys and
records a hit on each only when all of them fit (the check and the hits in one step,
so parallel attempts, in this process or another, cannot all pass the check).
`Budgets`: `spend(user_id, kind)` and `charge(user_id, kind)`.

Redis keys (prefix `redis.key_prefix`, `whatschat:` by default): `rl:<key>` a sorted set of hit times in
microseconds, expiring one window after the last hit; `budget:<kind>:<user id>` a hash
`{tokens, at}`, expiring once the bucket would have refilled (a missing bucket is full).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from redis.exceptions import RedisError

from models.errors import RateLimited

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


class Limiter(Protocol):
    async def retry_after(self, key: str, limit: int, window: float) -> float | None: ...
    async def hit(self, key: str, window: float) -> None: ...
    async def hit_if_allowed(self, limits: Sequence[tuple[str, int]], window: float) -> float | None: ...
    async def release(self, key: str) -> None: ...
    async def reset(self, key: str) -> None: ...


class EventBudgets(Protocol):
    rates: dict[str, tuple[float, float]]

    async def spend(self, user_id: str, kind: str) -> float | None: ...
    async def charge(self, user_id: str, kind: str) -> None: ...


def _refuse(wait: float | None, kind: str) -> None:
    if wait is not None:
        raise RateLimited(wait, f"Too many {kind}; slow down")


class RateLimiter:
    """Sliding windows of hit times, in this process."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._max_keys = max_keys

    def _window(self, key: str, window: float, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._evict(now, window)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - window:
            hits.popleft()
        return hits

    def _evict(self, now: float, window: float) -> None:
        """Drop keys with no recent hits so the table cannot grow without bound."""
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - window]:
            del self._hits[key]
        if len(self._hits) >= self._max_keys:
            self._hits.clear()

    def _retry_after(self, key: str, limit: int, window: float, now: float) -> float | None:
        hits = self._window(key, window, now)
        if len(hits) < limit:
            return None
        return hits[len(hits) - limit] + window - now

    async def retry_after(self, key: str, limit: int, window: float) -> float | None:
        """Seconds until one more hit fits the budget, or None if it fits now."""
        return self._retry_after(key, limit, window, time.monotonic())

    async def hit(self, key: str, window: float) -> None:
        now = time.monotonic()
        self._window(key, window, now).append(now)

    async def hit_if_allowed(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        """Hit every key if each has room (None); else the wait of the first full one, hitting none."""
        now = time.monotonic()
        for key, limit in limits:
            wait = self._retry_after(key, limit, window, now)
            if wait is not None:
                return wait
        for key, _ in limits:
            self._window(key, window, now).append(now)
        return None

    async def release(self, key: str) -> None:
        """Take back one hit (an attempt reserved with `hit` that turned out not to count)."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)


class Budgets:
    """Per-user token buckets per event class (`messages`, `typing`, `reads`, `uploads`).

    Checked before any write: a client that floods gets `RATE_001` with the time
    until its next event fits, and the store never sees the excess.
    """

    def __init__(self, rates: dict[str, tuple[float, float]], max_keys: int = 200_000) -> None:
        self.rates = rates  # class -> (tokens per second, burst)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._max_keys = max_keys

    async def spend(self, user_id: str, kind: str) -> float | None:
        """Take one token; None when allowed, else seconds to wait."""
        rate, burst = self.rates[kind]
        now = time.monotonic()
        key = (user_id, kind)
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / rate
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._buckets.clear()  # a full table only forgets budgets, which errs on allowing
        self._buckets[key] = (tokens - 1, now)
        return None

    async def charge(self, user_id: str, kind: str) -> None:
        """Take one token or refuse with `RateLimited` (429 `RATE_001` and `retryAfter`)."""
        _refuse(await self.spend(user_id, kind), kind)


# Times in the scripts are integer microseconds (ms for expiries), written with %d:
# Lua would print large numbers with 14 significant digits and lose the low ones.
_NOW_US = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS: the keys to check; ARGV: window (us), a unique member, then one limit per key, then 1 to hit
_CHECK_AND_HIT = (
    _NOW_US
    + """
local window = tonumber(ARGV[1])
local oldest_kept = string.format('%d', now - window)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', oldest_kept)
  local n = redis.call('ZCARD', key)
  local limit = tonumber(ARGV[i + 2])
  if n >= limit then
    local first = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
    return string.format('%d', tonumber(first[2]) + window - now)
  end
end
if ARGV[#KEYS + 3] == '1' then
  for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, string.format('%d', now), ARGV[2])
    redis.call('PEXPIRE', key, string.format('%d', math.ceil(window / 1000) + 1000))
  end
end
return false
"""
)

# KEYS[1]: the key; ARGV: window (us), a unique member
_HIT = (
    _NOW_US
    + """
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window))
redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[2])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(window / 1000) + 1000))
return 1
"""
)

# KEYS[1]: the bucket; ARGV: tokens per second, burst. Returns the wait in seconds, or nil.
_SPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = false
if tokens < 1 then
  wait = string.format('%.17g', (1 - tokens) / rate)
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(burst / rate * 1000) + 1000))
return wait
"""


_OUTAGE_LOG_EVERY = 10.0  # seconds between "Redis is away" warnings


class _FailOpen:
    """While Redis is unreachable, limits let traffic through and say so in the log (not per request).

    A chat that stops sending because its rate limiter is down would be worse
    than a few minutes without flood control.
    """

    def __init__(self) -> None:
        self._last_warning = 0.0

    def note(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _OUTAGE_LOG_EVERY:
            self._last_warning = now
            log.warning("rate limits are not enforced while Redis is unreachable: %s", exc)


def _micros(seconds: float) -> int:
    return max(1, round(seconds * 1_000_000))


class RedisRateLimiter:
    """`RateLimiter` with the hits in Redis, shared by every process."""

    def __init__(self, redis: Redis, prefix: str = "whatschat:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._check_and_hit = redis.register_script(_CHECK_AND_HIT)
        self._hit = redis.register_script(_HIT)
        self._outage = _FailOpen()

    def _key(self, key: str) -> str:
        return f"{self.prefix}rl:{key}"

    async def _run(self, limits: Sequence[tuple[str, int]], window: float, record: bool) -> float | None:
        keys = [self._key(key) for key, _ in limits]
        args: list[int | str] = [_micros(window), uuid.uuid4().hex, *(limit for _, limit in limits), int(record)]
        try:
            wait = await self._check_and_hit(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._outage.note(exc)
            return None
        return None if wait is None else int(wait) / 1_000_000

    async def retry_after(self, key: str, limit: int, window: float) -> float | None:
        """Seconds until one more hit fits the budget, or None if it fits now."""
        return await self._run([(key, limit)], window, record=False)

    async def hit(self, key: str, window: float) -> None:
        try:
            await self._hit(keys=[self._key(key)], args=[_micros(window), uuid.uuid4().hex])
        except (RedisError, OSError) as exc:
            self._outage.note(exc)

    async def hit_if_allowed(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        """Hit every key if each has room (None); else the wait of the first full one, hitting none."""
        return await self._run(limits, window, record=True)

    async def release(self, key: str) -> None:
        """Take back the latest hit."""
        try:
            await self.redis.zpopmax(self._key(key))
        except (RedisError, OSError) as exc:
            self._outage.note(exc)

    async def reset(self, key: str) -> None:
        try:
            await self.redis.delete(self._key(key))
        except (RedisError, OSError) as exc:
            self._outage.note(exc)


class RedisBudgets:
    """`Budgets` with the buckets in Redis, shared by every process."""

    def __init__(self, redis: Redis, rates: dict[str, tuple[float, float]], prefix: str = "whatschat:") -> None:
        self.redis = redis
        self.rates = rates  # class -> (tokens per second, burst)
        self.prefix = prefix
        self._spend = redis.register_script(_SPEND)
        self._outage = _FailOpen()

    async def spend(self, user_id: str, kind: str) -> float | None:
        """Take one token; None when allowed (or while Redis is unreachable), else seconds to wait."""
        rate, burst = self.rates[kind]
        try:
            wait = await self._spend(keys=[f"{self.prefix}budget:{kind}:{user_id}"], args=[repr(rate), repr(burst)])
        except (RedisError, OSError) as exc:
            self._outage.note(exc)
            return None
        return None if wait is None else float(wait)

    async def charge(self, user_id: str, kind: str) -> None:
        """Take one token or refuse with `RateLimited` (429 `RATE_001` and `retryAfter`)."""
        _refuse(await self.spend(user_id, kind), kind)
