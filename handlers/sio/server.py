"""The Socket.IO server: back-pressure on every client's queue, and what a handler learns of its event.

Engine.IO queues without limit, so a client that stops reading would grow the
server's memory forever; `SocketServer` bounds each queue, drops typing events
first and cuts off a client that falls too far behind. It also tells the
namespace handling an event whether the client asked for an ack (through
`ack_requested`), which event it is (`client_event`) and what to do once it has
been answered (`after_answer`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from handlers.sio.transport import EngineServer
from models.events import Event

log = logging.getLogger(__name__)
ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar("ack_requested", default=True)
# the name of the client event being handled: a client may not fire `connect`/`disconnect` itself
client_event: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_event", default=None)
# work to do once the event has been answered (a disconnect must not overtake its ack or `error`)
after_answer: contextvars.ContextVar[list[Callable[[], Awaitable[Any]]] | None] = contextvars.ContextVar(
    "after_answer", default=None
)

# how an encoded typing event begins: the first packets dropped for a client that falls behind
EPHEMERAL_EVENTS = tuple(f'["{event}"' for event in (Event.TYPING_START, Event.TYPING_STOP))


class SocketServer(socketio.AsyncServer):
    """`AsyncServer` with two additions the contract needs.

    - Handlers learn whether the client asked for an ack: python-socketio drops a
      handler's return value when none was requested, and the contract says
      errors must then go out as an `error` event. `_handle_event_internal` is
      the one place that knows the ack id.
    - Each client's outgoing queue is bounded. Engine.IO queues without limit, so
      a client that stops reading would grow server memory forever. Every emit
      passes `_send_eio_packet` (encoded once per event, whatever the number of
      recipients); past `ephemeral_queue` queued packets typing events are
      dropped, past `max_queue` the queue is dropped and the connection cut, and
      the client catches up with `sync` when it reconnects.
    """

    def __init__(self, *args: Any, ephemeral_queue: int = 64, max_queue: int = 2000, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ephemeral_queue = ephemeral_queue
        self.max_queue = max_queue
        self.cut_off = 0  # clients disconnected for falling behind, for health and tests
        self._cutting: set[str] = set()
        # room joins and leaves applied in this process so far (see `BaseNamespace.enter_chats`): one
        # number for every user, so it never grows, at the price of a rare needless re-read of chats
        self.room_changes = 0

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        """New connections wait while the manager cannot promise them every event (Redis away).

        Refused at the Engine.IO handshake, a client retries with its reconnection
        backoff (a refusal at the Socket.IO level would make socket.io-client give up).
        """
        if not getattr(self.manager, "accepting", True):
            return "Service unavailable: realtime delivery is reconnecting, retry shortly"
        return await super()._handle_eio_connect(eio_sid, environ)

    def _engineio_server_class(self) -> type[EngineServer]:
        """Engine.IO with sockets that cost little while idle (see `handlers.sio.transport`)."""
        return EngineServer

    def _admit(self, eio_sid: str, eio_pkt: Any) -> bool:
        """Whether a packet may join the client's queue; cuts the client off when it is full."""
        if eio_sid in self._cutting:  # being cut off: nothing more piles up behind the cleared queue
            return False
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            backlog = socket.queue.qsize()
            if backlog >= self.max_queue:
                self._cut_off(eio_sid, socket)
                return False
            if backlog >= self.ephemeral_queue and isinstance(eio_pkt.data, str):
                head = eio_pkt.data[:40]
                if any(marker in head for marker in EPHEMERAL_EVENTS):
                    return False
        return True

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        if self._admit(eio_sid, eio_pkt):
            await super()._send_eio_packet(eio_sid, eio_pkt)

    def deliver_nowait(self, eio_sid: str, eio_pkt: Any) -> bool:
        """Queue a packet for a live, healthy client at once: no task, no await.

        This is what `AsyncSocket.send` does for such a client (its queue has no
        bound, so `put` never waits). False when the client needs Engine.IO's own
        path (it missed its pings and must be closed): the caller then awaits
        `_send_eio_packet`.
        """
        if not self._admit(eio_sid, eio_pkt):
            return True
        socket = self.eio.sockets.get(eio_sid)
        if socket is None or socket.closed:
            return True  # gone: there is nobody to tell
        if socket.last_ping and time.time() - socket.last_ping > self.eio.ping_timeout:
            return False
        socket.queue.put_nowait(eio_pkt)
        return True

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        """Acks (and connect/disconnect packets) bypass `_send_eio_packet`: bound them the same way."""
        if eio_sid in self._cutting:
            return
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and socket.queue.qsize() >= self.max_queue:
            self._cut_off(eio_sid, socket)
            return
        await super()._send_packet(eio_sid, pkt)

    def _cut_off(self, eio_sid: str, socket: Any) -> None:
        if eio_sid in self._cutting:
            return
        self._cutting.add(eio_sid)
        self.cut_off += 1
        log.warning("client %s fell %d packets behind; disconnecting it", eio_sid, socket.queue.qsize())
        while not socket.queue.empty():  # free the memory now; the client recovers with `sync`
            socket.queue.get_nowait()
            socket.queue.task_done()
        request = self.environ.get(eio_sid, {}).get("aiohttp.request")
        if request is not None and request.transport is not None:
            request.transport.abort()
        task = asyncio.ensure_future(socket.close(wait=False, abort=True))
        task.add_done_callback(lambda _: self._cutting.discard(eio_sid))

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and reason == self.eio.reason.CLIENT_DISCONNECT:
            # a polling client said goodbye: end its long-poll GET now, not after ping_interval + ping_timeout
            socket.queue.put_nowait(None)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """A frame that is not a Socket.IO packet is logged in one line and dropped; the socket lives on."""
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            log.warning("malformed Socket.IO packet from %s dropped: %s", eio_sid, exc)

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: list[Any], namespace: str, id: int | None
    ) -> None:
        token = ack_requested.set(id is not None)
        event_token = client_event.set(data[0] if data else None)
        later: list[Callable[[], Awaitable[Any]]] = []
        later_token = after_answer.set(later)
        try:
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
        finally:
            ack_requested.reset(token)
            client_event.reset(event_token)
            after_answer.reset(later_token)
            for job in later:
                await job()
