"""Budgets of events per key over a sliding window, kept in this process.

Used for login failures now and for per-user event budgets later. The interface
is small (`retry_after`, `hit`, `release`, `reset`) so a Redis-backed limiter can take its
place when several processes must share the counts.
"""

from __future__ import annotations

import time
from collections import deque

from models.errors import RateLimited


class RateLimiter:
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

    def retry_after(self, key: str, limit: int, window: float) -> float | None:
        """Seconds until one more hit fits the budget, or None if it fits now."""
        now = time.monotonic()
        hits = self._window(key, window, now)
        if len(hits) < limit:
            return None
        return hits[len(hits) - limit] + window - now

    def hit(self, key: str, window: float) -> None:
        now = time.monotonic()
        self._window(key, window, now).append(now)

    def release(self, key: str) -> None:
        """Take back one hit (an attempt reserved with `hit` that turned out not to count)."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()

    def reset(self, key: str) -> None:
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

    def spend(self, user_id: str, kind: str) -> float | None:
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

    def charge(self, user_id: str, kind: str) -> None:
        """Take one token or refuse with `RateLimited` (429 `RATE_001` and `retryAfter`)."""
        wait = self.spend(user_id, kind)
        if wait is not None:
            raise RateLimited(wait, f"Too many {kind}; slow down")
