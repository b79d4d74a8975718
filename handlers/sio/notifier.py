"""The domain's `Notifier`, carried out with Socket.IO rooms.

Rooms: `user:<id>` holds every socket of a user, `login:<id>` every socket of
one login, `chat:<id>` every socket of the chat's members. An event goes out on
`/` and on the namespace that carries it (`EVENT_NAMESPACES`), encoded once per
namespace whatever the number of recipients.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import socketio

from handlers.sio.base import chat_room, login_room, user_room
from handlers.sio.namespaces import EVENT_NAMESPACES, NAMESPACES, ROOT
from models.notifier import Notifier

REVOKED = {"code": "AUTH_001", "message": "This session was signed out"}


class SocketNotifier(Notifier):
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    def _namespaces(self, event: str) -> tuple[str, ...]:
        extra = EVENT_NAMESPACES.get(event)
        return (ROOT, extra) if extra else (ROOT,)

    async def to_users(self, user_ids: Iterable[str], event: str, payload: Any) -> None:
        rooms = [user_room(uid) for uid in user_ids]
        if rooms:
            for ns in self._namespaces(event):
                await self.sio.emit(event, payload, room=rooms, namespace=ns)

    async def to_chat(self, chat_id: str, event: str, payload: Any, origin: str | None = None) -> None:
        for ns in self._namespaces(event):
            await self.sio.emit(event, payload, room=chat_room(chat_id), skip_sid=origin, namespace=ns)

    def _sockets_of(self, user_ids: Iterable[str]) -> list[tuple[str, str]]:
        out = []
        for ns in NAMESPACES:
            for uid in user_ids:
                out += [(ns, sid) for sid, _ in self.sio.manager.get_participants(ns, user_room(uid))]
        return out

    async def join_chat(self, user_ids: Iterable[str], chat_id: str) -> None:
        for ns, sid in self._sockets_of(list(user_ids)):
            await self.sio.enter_room(sid, chat_room(chat_id), namespace=ns)

    async def leave_chat(self, user_ids: Iterable[str], chat_id: str) -> None:
        for ns, sid in self._sockets_of(list(user_ids)):
            await self.sio.leave_room(sid, chat_room(chat_id), namespace=ns)

    async def end_sessions(self, session_ids: Iterable[str]) -> None:
        """Tell each socket of those logins why, then disconnect it."""
        for session_id in session_ids:
            room = login_room(session_id)
            for ns in NAMESPACES:
                for sid in [sid for sid, _ in self.sio.manager.get_participants(ns, room)]:
                    await self.sio.emit("unauthorized", REVOKED, to=sid, namespace=ns)
                    await self.sio.disconnect(sid, namespace=ns)
