"""Socket.IO rooms: their names, and a leaner bookkeeping of their members.

Rooms: `user:<id>` holds every socket of a user, `login:<id>` every socket of
one login, `chat:<id>` every socket of the chat's members; every socket also has
the room of its own sid.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def login_room(session_id: str) -> str:
    return f"login:{session_id}"


def chat_room(chat_id: str) -> str:
    return f"chat:{chat_id}"


def is_chat_room(room: object) -> bool:
    return isinstance(room, str) and room.startswith("chat:")


class CompactRooms:
    """python-socketio's room bookkeeping, with a plain dict for every room but the index of clients.

    python-socketio keeps each room as a `bidict` (sid <-> Engine.IO sid), yet
    only the room of all connected clients (`None`) is ever read backwards
    (`sid_from_eio_sid`). Every socket has a room of its own (its sid) and joins
    its user's and its login's, so an idle socket held three `bidict`s of about
    470 bytes each with one member; a dict with the same content takes about 190.
    A mixin for python-socketio's managers: it overrides the two methods that
    create rooms and read their members.
    """

    rooms: dict[str, dict[Any, Any]]

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        if room is None:  # the index of clients stays python-socketio's (unique Engine.IO sids)
            super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
            return
        if eio_sid is None and namespace not in self.rooms:
            raise ValueError("sid is not connected to requested namespace")
        if sid != room and self.is_sid_room(namespace, room):  # type: ignore[attr-defined]
            raise ValueError("cannot enter a sid room")
        rooms = self.rooms.setdefault(namespace, {})
        if eio_sid is None:
            eio_sid = rooms[None][sid]
        rooms.setdefault(room, {})[sid] = eio_sid

    def get_participants(self, namespace: str, room: Any) -> Iterator[tuple[str, str]]:
        ns = self.rooms.get(namespace, {})
        names = room if hasattr(room, "__len__") and not isinstance(room, str) else [room]
        participants: dict[str, str] = {}
        for name in names:
            members = ns.get(name)
            if members is not None:  # a dict, or the index of clients (a mapping as well)
                participants.update(members)
        yield from participants.items()
