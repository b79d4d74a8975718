"""The base of every namespace: authentication and the answer to every event.

A socket authenticates in one of three ways (handshake `auth.token`, `?token=`
in the URL, or the `authenticate` event); until it does, every other event is
refused with `AUTH_001`, and after `socketio.auth_timeout` seconds it is
disconnected. The connection is always accepted first, so that a browser client
can read `unauthorized {code, message}` before the server disconnects it.

Every client event is loaded with its schema and answered through the ack as
`{success: true, data}` or `{success: false, error: {code, message}}`; a client
that asked for no ack gets failures as an `error {code, message, event}` event.
A handler that raises never kills the connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import socketio
from marshmallow import Schema

from handlers.sio.transport import EngineServer
from models.auth import AuthService, Identity
from models.calls import CallService
from models.chats import ChatService
from models.errors import AppError, Unauthenticated, ValidationFailed
from models.messages import MessageService
from models.presence import PresenceService
from models.users import UserService
from schemas.auth import Authenticate
from schemas.common import load
from schemas.users import UserOut

log = logging.getLogger(__name__)
ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar("ack_requested", default=True)
# the name of the client event being handled: a client may not fire `connect`/`disconnect` itself
client_event: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_event", default=None)
# work to do once the event has been answered (a disconnect must not overtake its ack or `error`)
after_answer: contextvars.ContextVar[list[Callable[[], Awaitable[Any]]] | None] = contextvars.ContextVar(
    "after_answer", default=None
)
_user_out = UserOut()


EPHEMERAL_EVENTS = ('["typing_start"', '["typing_stop"')


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
        # user id -> room changes of theirs applied in this process (see `BaseNamespace.enter_chats`)
        self.room_changes: Counter[str] = Counter()

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


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def login_room(session_id: str) -> str:
    return f"login:{session_id}"


def chat_room(chat_id: str) -> str:
    return f"chat:{chat_id}"


@dataclass(frozen=True, slots=True)
class Services:
    """The domain services the namespaces call; built once in the app factory."""

    auth: AuthService
    users: UserService
    presence: PresenceService
    chats: ChatService
    messages: MessageService
    calls: CallService
    auth_timeout: float


def _ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data}


def _failure(error: AppError) -> dict[str, Any]:
    return {"success": False, "error": error.to_dict()}


class BaseNamespace(socketio.AsyncNamespace):
    """Authentication and the event envelope; subclasses add `on_<event>` handlers.

    Handlers take `(sid, identity, data)` where `data` was loaded with
    `event_schemas[event]` (events without a schema get the raw payload if it is
    an object, `{}` if absent).
    """

    event_schemas: dict[str, type[Schema]] = {}

    def __init__(self, namespace: str, services: Services) -> None:
        super().__init__(namespace)
        self.services = services
        self._deadlines: set[asyncio.Task[None]] = set()  # task references, so none is collected early
        # one loader per event, made once (building a marshmallow schema deep-copies its fields);
        # a schema with a `fast_load` has a quicker path to the same answers for the common payload
        self._loaders: dict[str, Callable[[Any], dict[str, Any]]] = {
            event: getattr(schema, "fast_load", None) or functools.partial(load, schema())
            for event, schema in self.event_schemas.items()
        }

    # connection lifecycle
    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        # the Engine.IO session outlives a namespace: one that reconnects on the same connection starts clean
        await self.save_session(sid, {})
        token = auth.get("token") if isinstance(auth, dict) else None
        if not token:
            token = (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [None])[0]
        if token:
            try:
                await self._authenticate(sid, token if isinstance(token, str) else "")
            except Exception as exc:
                if not isinstance(exc, AppError):
                    log.exception("authenticating a socket failed")
                error = exc if isinstance(exc, AppError) else AppError()
                await self.emit("unauthorized", error.to_dict(), to=sid)
                # not `return False`: python-socketio would then send a DISCONNECT with a payload,
                # which socket.io-client 4 drops as a parse error (and reconnects in a loop)
                await self.disconnect(sid)
            return True
        task = asyncio.ensure_future(self._deadline(sid))
        self._deadlines.add(task)
        task.add_done_callback(self._deadlines.discard)
        await self.save_session(sid, {"deadline": task})
        return True

    async def _deadline(self, sid: str) -> None:
        await asyncio.sleep(self.services.auth_timeout)
        session = await self._session(sid)
        if session is not None and "identity" not in session:
            await self.emit("unauthorized", {"code": "AUTH_001", "message": "Authentication timed out"}, to=sid)
            await self.disconnect(sid)

    async def _session(self, sid: str) -> dict[str, Any] | None:
        try:
            return await self.get_session(sid)
        except KeyError:
            return None

    async def _authenticate(self, sid: str, token: str) -> dict[str, Any]:
        """Bind the socket to the token's user, all or nothing; answers the `authenticated` payload.

        Everything that can fail (the token, the user's view, the chats, presence)
        is done before the identity is kept, and undone if a later step fails, so a
        socket is either authenticated with every room joined and counted online,
        or not at all and free to try again.
        """
        session = await self._session(sid) or {}
        if "identity" in session or session.get("authenticating"):  # a bad token must not end this socket
            raise ValidationFailed("This socket is already authenticated")
        session["authenticating"] = True
        await self.save_session(sid, session)
        identity, counted = None, False
        try:
            identity = await self.services.auth.authenticate(token)
            await self.enter_room(sid, user_room(identity.user.id))
            await self.enter_room(sid, login_room(identity.session_id))
            await self.enter_chats(sid, identity.user.id)
            await self.services.presence.socket_opened(identity.user.id, sid)
            counted = True
            user = await self.services.users.view(identity.user, identity.user.id)  # online, counted just now
        except BaseException:
            if counted and identity is not None:
                await self.after_sign_off(sid, identity)
            if identity is not None:
                for room in self.rooms(sid):
                    if room != sid:
                        await self.leave_room(sid, room)
            session = await self._session(sid)
            if session is not None:
                session.pop("authenticating", None)
                await self.save_session(sid, session)
            raise
        session = await self._session(sid)
        if session is None or not self.server.manager.is_connected(sid, self.namespace):
            # it disconnected while being counted, and its close found no identity: undo the count
            await self.after_sign_off(sid, identity)
            return {"user": _user_out.dump(user)}
        deadline = session.pop("deadline", None)
        if deadline is not None:
            deadline.cancel()
        session.pop("authenticating", None)
        session["identity"] = identity
        await self.save_session(sid, session)
        payload = {"user": _user_out.dump(user)}
        await self.emit("authenticated", payload, to=sid)
        return payload

    async def enter_chats(self, sid: str, user_id: str) -> None:
        """Join the rooms of every chat of the user, as the store has them once no room change races the read.

        A member added or removed while the chats were read has its room change
        applied to the user's sockets, which this one may not have been among yet;
        the count of changes applied to the user tells, and the chats are read again.
        """
        changes = self.server.room_changes
        for _ in range(10):
            seen = changes[user_id]
            chats = {chat_room(chat_id) for chat_id in await self.services.chats.chat_ids(user_id)}
            for room in self.rooms(sid):
                if room.startswith("chat:") and room not in chats:
                    await self.leave_room(sid, room)
            for room in chats:
                await self.enter_room(sid, room)
            if changes[user_id] == seen:
                return
        log.warning("the chats of %s kept changing while a socket joined them", user_id)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        session = await self._session(sid)
        if not session:
            return
        deadline = session.get("deadline")
        if deadline is not None:
            deadline.cancel()
        identity = session.get("identity")
        if identity is not None:
            await self.after_sign_off(sid, identity)

    async def after_sign_off(self, sid: str, identity: Identity) -> None:
        try:
            await self.services.presence.socket_closed(identity.user.id, sid)
        except Exception:  # shared presence unreachable (Redis away): the disconnect itself must complete
            log.warning("presence could not count a closed socket of %s", identity.user.id, exc_info=True)

    # events
    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect") and client_event.get() != event:
            return await super().trigger_event(event, *args)
        sid, payload = args[0], (args[1] if len(args) > 1 else None)
        try:
            result = await self._dispatch(sid, event, payload)
        except AppError as exc:
            return await self._refuse(sid, event, exc)
        except Exception:
            log.exception("event %s failed", event)
            return await self._refuse(sid, event, AppError())
        return _ok(result)

    async def _refuse(self, sid: str, event: str, error: AppError) -> dict[str, Any] | None:
        if ack_requested.get():
            return _failure(error)
        await self.emit("error", {**error.to_dict(), "event": event}, to=sid)
        return None

    async def _dispatch(self, sid: str, event: str, payload: Any) -> Any:
        if event == "authenticate":
            data = load(Authenticate(), payload)
            try:
                return await self._authenticate(sid, data["token"])
            except Unauthenticated as exc:
                await self.emit("unauthorized", exc.to_dict(), to=sid)
                later = after_answer.get()
                if later is None:
                    await self.disconnect(sid)
                else:  # after the ack or `error` went out, or the client would never read it
                    later.append(lambda: self.disconnect(sid))
                raise
        session = await self._session(sid)
        identity = session.get("identity") if session else None
        if identity is None:
            raise Unauthenticated("Authenticate first")
        handler = getattr(self, f"on_{event}", None)
        if handler is None or event in ("connect", "disconnect"):
            raise ValidationFailed(f"Unknown event '{event}'")
        loader = self._loaders.get(event)
        data = loader(payload) if loader else (payload if isinstance(payload, dict) else {})
        return await handler(sid, identity, data)
