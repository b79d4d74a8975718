"""Ids and timestamps in the one format the wire contract uses.

Ids are 24 hex characters: 6 bytes of milliseconds since the epoch and 6 bytes
that are random per process and count up within it. They sort by creation time
(history pages and cursors rely on that), are unique across processes, and are
valid MongoDB ObjectIds as well.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta


class _IdGenerator:
    def __init__(self) -> None:
        self._last_ms = 0
        self._counter = int.from_bytes(os.urandom(6), "big") >> 1

    def __call__(self) -> str:
        now = time.time_ns() // 1_000_000
        if now <= self._last_ms:
            now = self._last_ms  # clock went back or same ms: keep order by counting
            self._counter = (self._counter + 1) % (1 << 48)
        else:
            self._last_ms = now
            self._counter = int.from_bytes(os.urandom(6), "big") >> 1
        return f"{now:012x}{self._counter:012x}"


new_id = _IdGenerator()


def iso(dt: datetime) -> str:
    """`2024-01-01T00:00:00.000Z`: UTC, milliseconds, sortable as text."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # drops "+00:00"


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso_in(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def id_time(any_id: str) -> str:
    """When an id was made, in the contract's format (ids begin with their milliseconds)."""
    return iso(datetime.fromtimestamp(int(any_id[:12], 16) / 1000, UTC))


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
