"""Who is online, as this process sees it, and how that looks to others.

A user is online while at least one of their sockets is authenticated. What
others see is `offline` when the user has no live socket, chose `invisible`, or
blocked the viewer; the user themself always sees their own setting.
"""

from __future__ import annotations

from collections import Counter

from models.documents import User


class PresenceService:
    def __init__(self) -> None:
        self._sockets: Counter[str] = Counter()

    def socket_opened(self, user_id: str) -> int:
        """Count one more live socket; returns how many the user has now."""
        self._sockets[user_id] += 1
        return self._sockets[user_id]

    def socket_closed(self, user_id: str) -> int:
        left = self._sockets[user_id] - 1
        if left <= 0:
            del self._sockets[user_id]
            return 0
        self._sockets[user_id] = left
        return left

    def is_online(self, user_id: str) -> bool:
        return self._sockets[user_id] > 0 if user_id in self._sockets else False

    @property
    def online_users(self) -> int:
        return len(self._sockets)

    def presence_for(self, user: User, viewer_id: str | None, hidden_from_viewer: bool = False) -> str:
        """The presence `viewer_id` may see of `user`."""
        if viewer_id == user.id:
            return user.presence_setting if self.is_online(user.id) else "offline"
        if hidden_from_viewer or user.presence_setting == "invisible" or not self.is_online(user.id):
            return "offline"
        return user.presence_setting
