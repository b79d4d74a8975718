"""What the domain tells the realtime side, after each write has been stored.

Services hold a `Notifier` and call it once the store has returned; the
Socket.IO layer implements it (rooms per user, per login and per chat). Tests
and tools that need no sockets use the silent base class.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Notifier:
    """Silent by default: every method is a no-op the Socket.IO notifier overrides."""

    async def to_users(self, user_ids: Iterable[str], event: str, payload: Any) -> None:
        """Send `event` to every live socket of each user."""

    async def end_sessions(self, session_ids: Iterable[str]) -> None:
        """Disconnect every socket that authenticated with one of these logins."""
