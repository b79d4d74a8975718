"""`GET /ws`: the plain WebSocket of the Go Chat Web door.

A token (`?token=` or `Authorization: Bearer`) is checked before the upgrade:
a bad one is a 401 in the door's envelope, never an open socket. Then one reader
per connection takes frames in order; each is loaded with its schema and handed
to the service the Socket.IO handler of the same event calls. A frame with a
`request_id` is answered `ack` or `error`; without one, only failures are. Bad
JSON, an unknown type or invalid data gets an `error` frame and the connection
stays open; a frame over 64 KiB (as received, after decompression) closes it
with 1009 (aiohttp's `max_msg_size`, made exact by `_oversized`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from marshmallow import Schema

from handlers.gochat.common import WS, error_data
from handlers.gochat.hub import Connection
from handlers.rest.common import services
from models.auth import Identity
from models.errors import AppError, BadRequest, ServiceUnavailable, ValidationFailed
from models.services import Services
from models.store.base import StoreUnavailable
from schemas import gochat as go
from schemas.common import load
from schemas.payloads import dump_one
from server.keys import CONFIG, HUB, SIO

log = logging.getLogger(__name__)
MAX_FRAME = 64 * 1024

_message_out, _status_out, _read_out = go.MessageOut(), go.StatusOut(), go.ReadOut()
Handler = Callable[[Services, Identity, dict[str, Any]], Awaitable[Any]]


async def _send_message(s: Services, identity: Identity, data: dict[str, Any]) -> Any:
    view, _ = await s.messages.send(identity, {**data, "metadata": None})
    return _message_out.dump(dump_one(view))


async def _typing(started: bool, s: Services, identity: Identity, data: dict[str, Any]) -> Any:
    notice = await s.messages.typing(identity, data["chat_id"], started)
    return {"chat_id": notice.chat_id}


async def _typing_start(s: Services, identity: Identity, data: dict[str, Any]) -> Any:
    return await _typing(True, s, identity, data)


async def _typing_stop(s: Services, identity: Identity, data: dict[str, Any]) -> Any:
    return await _typing(False, s, identity, data)


async def _user_status(s: Services, identity: Identity, data: dict[str, Any]) -> Any:
    user = await s.users.set_presence(identity, go.CHOSEN[data["status"]])
    return _status_out.dump({"status": data["status"], "last_seen": go.unix(user.last_seen)})


async def _mark_read(s: Services, identity: Identity, data: dict[str, Any]) -> Any:
    state = await s.messages.mark_read(identity, data["chat_id"], data["message_id"])
    return _read_out.dump(state)


@dataclass(frozen=True, slots=True)
class ClientFrame:
    schema: type[Schema]  # what its `data` is
    handle: Handler
    description: str
    answer: type[Schema]  # what its `ack` carries (the AsyncAPI document shows it)


# every frame a client may send but `ping` (answered `pong`, before anything is loaded)
CLIENT_FRAMES: dict[str, ClientFrame] = {
    "send_message": ClientFrame(
        go.SendFrame, _send_message, "Send a message; the ack carries it as stored.", go.MessageOut
    ),
    "typing_start": ClientFrame(go.ChatRef, _typing_start, "You started typing in a chat.", go.ChatRef),
    "typing_stop": ClientFrame(go.ChatRef, _typing_stop, "You stopped typing in a chat.", go.ChatRef),
    "user_status": ClientFrame(
        go.StatusUpdate, _user_status, "Set your status (`offline`: appear offline).", go.StatusOut
    ),
    "mark_read": ClientFrame(
        go.MarkReadFrame, _mark_read, "Mark a chat read up to a message (all when absent).", go.ReadOut
    ),
}
_loaders = {name: spec.schema() for name, spec in CLIENT_FRAMES.items()}


def _token(request: web.Request) -> str | None:
    token = request.query.get("token")
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    if not getattr(app[SIO].manager, "accepting", True):  # Redis away: events could be missed
        raise ServiceUnavailable("Realtime delivery is reconnecting; retry shortly")
    s = services(request)
    identity = await s.auth.authenticate(_token(request))  # 401 in the door's envelope, before the upgrade
    limits, ping = app[CONFIG].limits, app[CONFIG].socketio.ping_interval
    # aiohttp refuses an uncompressed message of exactly `max_msg_size` bytes, a decompressed one only past it:
    # one byte of slack, and the limit checked here for both (`_oversized`)
    ws = web.WebSocketResponse(heartbeat=ping, max_msg_size=MAX_FRAME + 1, compress=True)
    await ws.prepare(request)
    hub = app[HUB]
    conn = Connection(ws, identity, limits.ephemeral_queue, limits.max_queue)
    conn.start()
    hub.add(conn)
    counted = False
    try:
        await s.auth.authenticate(_token(request))  # a logout that raced the upgrade found no connection to end
        await hub.follow(conn, lambda: s.chats.chat_ids(identity.user.id))
        await s.presence.socket_opened(identity.user.id, conn.id)
        counted = True
        # `connected` once every chat is followed, first: events that came meanwhile were held for after it
        conn.announce({"type": "connected", "data": {"user_id": identity.user.id, "timestamp": int(time.time())}})
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and _oversized(msg.data):
                conn.close(int(WSCloseCode.MESSAGE_TOO_BIG), "message too big")
            elif msg.type == WSMsgType.TEXT:
                await _on_frame(s, conn, msg.data)
            elif msg.type == WSMsgType.BINARY:
                _answer_error(conn, None, BadRequest("Frames are JSON text"))
    except Exception as exc:  # the login ended, or the store failed, while the connection was being set up
        if not isinstance(exc, AppError | StoreUnavailable):
            log.exception("/ws connection of %s failed", identity.user.id)
        conn.close(4001 if isinstance(exc, AppError) and exc.status == 401 else 1011, "could not start")
    finally:
        hub.discard(conn)
        if counted:
            try:
                await s.presence.socket_closed(identity.user.id, conn.id)
            except Exception:  # shared presence unreachable: the close itself must complete
                log.warning("presence could not count a closed /ws connection of %s", identity.user.id, exc_info=True)
        await conn.stop()
        if not ws.closed:
            await ws.close()
    return ws


def _oversized(data: str | bytes) -> bool:
    """Over 64 KiB as received: a text message counts its UTF-8 bytes (at most 4 a character)."""
    if isinstance(data, str) and len(data) * 4 > MAX_FRAME:
        data = data.encode()
    return len(data) > MAX_FRAME


async def _on_frame(s: Services, conn: Connection, text: str) -> None:
    request_id: Any = None
    try:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise BadRequest("Malformed JSON") from None
        if not isinstance(frame, dict):
            raise BadRequest("A frame is a JSON object {type, data}")
        request_id = frame.get("request_id")
        if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, str | int)):
            request_id = None
            raise ValidationFailed(details={"request_id": ["A string or an integer."]})
        kind = frame.get("type")
        if kind == "ping":
            conn.send_json({"type": "pong", **({"request_id": request_id} if request_id is not None else {})})
            return
        spec = CLIENT_FRAMES.get(kind) if isinstance(kind, str) else None
        if spec is None or not isinstance(kind, str):
            raise ValidationFailed(f"Unknown frame type {kind!r}", details={"type": sorted([*CLIENT_FRAMES, "ping"])})
        raw = frame.get("data", {})
        data = load(_loaders[kind], raw if raw is not None else {})
        result = await spec.handle(s, conn.identity, data)
    except AppError as exc:
        _answer_error(conn, request_id, exc)
        return
    except StoreUnavailable as exc:
        log.warning("/ws frame: store unavailable: %s", exc)
        _answer_error(conn, request_id, ServiceUnavailable("The database cannot be used right now; retry"))
        return
    except Exception:
        log.exception("/ws frame failed")
        _answer_error(conn, request_id, AppError())
        return
    if request_id is not None:
        conn.send_json({"type": "ack", "request_id": request_id, "data": result})


def _answer_error(conn: Connection, request_id: Any, error: AppError) -> None:
    data = {"code": error.status, "message": error.message, **error_data(error)}
    frame: dict[str, Any] = {"type": "error", "data": data}
    if request_id is not None:
        frame["request_id"] = request_id
    conn.send_json(frame)


routes = [web.get(WS, websocket, allow_head=False)]
