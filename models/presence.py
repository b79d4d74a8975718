"""Who is online, how that looks to others, and who is told when it changes.

A user is online from their first live authenticated socket until
`presence.grace_period` seconds after the last one closes, across devices, so a
page reload or a brief network drop does not flicker them offline. What others
see is `offline` when the user is offline, chose `invisible`, or blocked the
viewer; the user themself sees their own setting while online.

Changes go out as `user_status_changed {userId, status, lastSeen}` to the users
who share a chat with the user and have not been blocked by them, never to
everyone. Counts live in this process; several processes share them through
Redis (a later step).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from models.clock import now_iso
from models.documents import User
from models.notifier import Notifier
from models.store.base import Store

log = logging.getLogger(__name__)
GoneHook = Callable[[str], Awaitable[None]]


class PresenceService:
    def __init__(self, store: Store, notifier: Notifier, grace_period: float) -> None:
        self.store = store
        self.notifier = notifier
        self.grace_period = grace_period
        self._sockets: dict[str, set[str]] = {}  # user id -> ids of their live sockets
        self._leaving: dict[str, asyncio.Task[None]] = {}  # users within their grace period
        self._on_last_socket: list[GoneHook] = []

    def on_last_socket_closed(self, hook: GoneHook) -> None:
        """Run `hook(user_id)` when a user's last socket closes (calls end their part at once)."""
        self._on_last_socket.append(hook)

    def is_online(self, user_id: str) -> bool:
        return user_id in self._sockets or user_id in self._leaving

    @property
    def online_users(self) -> int:
        return len(self._sockets.keys() | self._leaving.keys())

    def presence_for(self, user: User, viewer_id: str | None, hidden_from_viewer: bool = False) -> str:
        """The presence `viewer_id` may see of `user`."""
        if viewer_id == user.id:
            return user.presence_setting if self.is_online(user.id) else "offline"
        if hidden_from_viewer or user.presence_setting == "invisible" or not self.is_online(user.id):
            return "offline"
        return user.presence_setting

    async def socket_opened(self, user_id: str, socket_id: str) -> None:
        """Count a live socket; the first one (outside a grace period) makes the user online."""
        sockets = self._sockets.setdefault(user_id, set())
        sockets.add(socket_id)
        if len(sockets) > 1:
            return
        leaving = self._leaving.pop(user_id, None)
        if leaving is not None:
            leaving.cancel()  # back within the grace period: nobody saw them leave
            return
        await self.announce(user_id)

    async def socket_closed(self, user_id: str, socket_id: str) -> None:
        """Forget a socket (closing one twice, or one never counted, changes nothing)."""
        sockets = self._sockets.get(user_id)
        if sockets is None or socket_id not in sockets:
            return
        sockets.discard(socket_id)
        if sockets:
            return
        del self._sockets[user_id]
        for hook in self._on_last_socket:
            try:
                await hook(user_id)
            except Exception:
                log.exception("last-socket hook failed")
        task = asyncio.ensure_future(self._go_offline_later(user_id))
        self._leaving[user_id] = task

    async def _go_offline_later(self, user_id: str) -> None:
        await asyncio.sleep(self.grace_period)
        if self._leaving.get(user_id) is not asyncio.current_task():
            return
        del self._leaving[user_id]
        await self.store.update_user(user_id, {"last_seen": now_iso()})
        await self.announce(user_id)

    async def announce(self, user_id: str, connection_change: bool = True) -> None:
        """Tell the user's audience how they look now.

        An invisible user coming or going looks `offline` before and after: no event.
        """
        user = await self.store.get_user(user_id)
        if user is None or (connection_change and user.presence_setting == "invisible"):
            return
        audience = await self.audience(user_id)
        if not audience:
            return
        status = self.presence_for(user, None)
        last_seen = None if user.presence_setting == "invisible" else user.last_seen
        await self.notifier.to_users(
            audience, "user_status_changed", {"userId": user.id, "status": status, "lastSeen": last_seen}
        )

    async def audience(self, user_id: str) -> list[str]:
        """Everyone who shares a chat with the user, less those the user blocked."""
        shared = await self.store.shared_chat_user_ids(user_id)
        blocked = set(await self.store.blocked_ids(user_id))
        return [uid for uid in shared if uid not in blocked]

    async def close(self) -> None:
        for task in self._leaving.values():
            task.cancel()
        self._leaving.clear()
