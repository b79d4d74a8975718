"""What the domain tells the realtime side, after each write has been stored.

Services hold a `Notifier` and call it once the store has returned; the
Socket.IO layer implements it (rooms per user, per login and per chat, and the
namespaces each event belongs to). `origin` is the socket that caused the event,
which does not get its own echo. Tools that need no sockets use this silent class.

An event is an `Event` and its payload a view (`models.views`) or a document:
the notifier dumps it with the schema the event registry gives the event, so
services build no wire dicts and name no event by a bare string.
"""

from __future__ import annotations

from collections.abc import Iterable

from models.events import Event


class Notifier:
    """Silent by default: every method is a no-op the Socket.IO notifier overrides."""

    async def to_users(self, user_ids: Iterable[str], event: Event, view: object) -> None:
        """Send `event` to every live socket of each user."""

    async def to_chat(self, chat_id: str, event: Event, view: object, origin: str | None = None) -> None:
        """Send `event` to every socket in the chat but `origin`."""

    async def join_chat(self, user_ids: Iterable[str], chat_id: str) -> None:
        """Every live socket of these users starts receiving the chat's events now."""

    async def leave_chat(self, user_ids: Iterable[str], chat_id: str) -> None:
        """Every live socket of these users stops receiving the chat's events now."""

    async def end_sessions(self, session_ids: Iterable[str]) -> None:
        """Disconnect every socket that authenticated with one of these logins."""
