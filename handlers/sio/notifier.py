"""The domain's `Notifier`, carried out with Socket.IO rooms.

Rooms: `user:<id>` holds every socket of a user, `login:<id>` every socket of
one login. An event goes to the namespaces that carry it and to `/`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import socketio

from handlers.sio.base import login_room, user_room
from handlers.sio.namespaces import NAMESPACES, ROOT

REVOKED = {"code": "AUTH_001", "message": "This session was signed out"}


class SocketNotifier:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    async def to_users(self, user_ids: Iterable[str], event: str, payload: Any, namespace: str = ROOT) -> None:
        rooms = [user_room(uid) for uid in user_ids]
        if not rooms:
            return
        for ns in {namespace, ROOT}:
            await self.sio.emit(event, payload, room=rooms, namespace=ns)

    async def end_sessions(self, session_ids: Iterable[str]) -> None:
        """Tell each socket of those logins why, then disconnect it."""
        for session_id in session_ids:
            room = login_room(session_id)
            for ns in NAMESPACES:
                sids = [sid for sid, _ in self.sio.manager.get_participants(ns, room)]
                for sid in sids:
                    await self.sio.emit("unauthorized", REVOKED, to=sid, namespace=ns)
                    await self.sio.disconnect(sid, namespace=ns)
