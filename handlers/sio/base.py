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
import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import socketio
from marshmallow import Schema

from handlers.sio.rooms import chat_room, is_chat_room, login_room, user_room
from handlers.sio.server import ack_requested, after_answer, client_event
from models.auth import Identity
from models.errors import AppError, Unauthenticated, ValidationFailed
from models.events import Event
from models.services import Services
from schemas.auth import Authenticate
from schemas.common import load
from schemas.users import UserOut

log = logging.getLogger(__name__)
_user_out = UserOut()


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

    def __init__(self, namespace: str, services: Services, auth_timeout: float) -> None:
        super().__init__(namespace)
        self.services = services
        self.auth_timeout = auth_timeout
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
                await self.emit(Event.UNAUTHORIZED, error.to_dict(), to=sid)
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
        await asyncio.sleep(self.auth_timeout)
        session = await self._session(sid)
        if session is not None and "identity" not in session:
            await self.emit(Event.UNAUTHORIZED, {"code": "AUTH_001", "message": "Authentication timed out"}, to=sid)
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
        started = await self._session(sid) or {}
        if "identity" in started or started.get("authenticating"):  # a bad token must not end this socket
            raise ValidationFailed("This socket is already authenticated")
        started["authenticating"] = True
        await self.save_session(sid, started)
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
        payload = {"user": _user_out.dump(user)}
        session = await self._session(sid)
        if session is None or not self.server.manager.is_connected(sid, self.namespace):
            # it disconnected while being counted, and its close found no identity: undo the count
            await self.after_sign_off(sid, identity)
            return payload
        deadline = session.pop("deadline", None)
        if deadline is not None:
            deadline.cancel()
        session.pop("authenticating", None)
        session["identity"] = identity
        await self.save_session(sid, session)
        await self.emit(Event.AUTHENTICATED, payload, to=sid)
        return payload

    async def enter_chats(self, sid: str, user_id: str) -> None:
        """Join the rooms of every chat of the user, as the store has them once no room change races the read.

        A member added or removed while the chats were read has its room change
        applied to the user's sockets, which this one may not have been among yet;
        the count of room changes applied in this process tells, and the chats are
        read again.
        """
        for _ in range(10):
            seen = self.server.room_changes
            chats = {chat_room(chat_id) for chat_id in await self.services.chats.chat_ids(user_id)}
            for room in self.rooms(sid):
                if is_chat_room(room) and room not in chats:
                    await self.leave_room(sid, room)
            for room in chats:
                await self.enter_room(sid, room)
            if self.server.room_changes == seen:
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
        await self.emit(Event.ERROR, {**error.to_dict(), "event": event}, to=sid)
        return None

    async def _dispatch(self, sid: str, event: str, payload: Any) -> Any:
        if event == "authenticate":
            data = load(Authenticate(), payload)
            try:
                return await self._authenticate(sid, data["token"])
            except Unauthenticated as exc:
                await self.emit(Event.UNAUTHORIZED, exc.to_dict(), to=sid)
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
