"""Fan-out without a task per recipient.

python-socketio's `AsyncManager.emit` encodes a room broadcast once, then starts
one asyncio task per recipient to queue it, and waits for them all: for a group
of 50 that is 49 tasks per message, most of the cost of a delivery. Queuing on
an Engine.IO socket never waits (its queue has no bound of its own; ours is
checked in `SocketServer._admit`), so this manager queues the shared packet for
every recipient directly, in order, and keeps the awaited path only for the
rare client Engine.IO must close first. Emits that ask for callbacks keep
python-socketio's own path.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet


class DirectFanoutManager(socketio.AsyncManager):
    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        deliver = getattr(self.server, "deliver_nowait", None)
        if callback is not None or deliver is None:
            return await super().emit(event, data, namespace, room, skip_sid, callback, to, **kwargs)
        room = to or room
        if namespace not in self.rooms:
            return
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        recipients = [eio_sid for sid, eio_sid in self.get_participants(namespace, room) if sid not in skip]
        if not recipients:  # e.g. a chat nobody follows on this namespace: nothing to encode
            return
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        encoded = self.server.packet_class(packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        frames = [
            eio_packet.Packet(eio_packet.MESSAGE, p) for p in (encoded if isinstance(encoded, list) else [encoded])
        ]
        slow: list[tuple[str, list[Any]]] = []
        for eio_sid in recipients:
            for i, frame in enumerate(frames):
                if not deliver(eio_sid, frame):
                    slow.append((eio_sid, frames[i:]))
                    break
        for eio_sid, rest in slow:
            for frame in rest:
                await self.server._send_eio_packet(eio_sid, frame)
