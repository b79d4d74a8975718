"""A bare python-socketio chat server: the yardstick `make bench` holds WhatsChat against.

It is the python-socketio server a developer would write first: everything in
memory (users, tokens, chats, messages in dicts and lists), no persistence, no
validation beyond what keeps it from crashing, a token checked by looking it up.
It speaks exactly the subset the load test uses, in WhatsChat's wire shapes
(docs/protocol.md), and uses the same fast parts WhatsChat does (orjson for
Socket.IO packets, uvloop when run as a program) and the same Engine.IO
settings, so a WhatsChat figure divided by this one measures what WhatsChat's
own work costs: storage, validation, flood control, presence.

    python -m bench.baseline --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import socketio
from aiohttp import web

# WhatsChat's defaults (config.yaml, `socketio` section).
PING_INTERVAL = 25
PING_TIMEOUT = 20
MAX_PAYLOAD = 4 * 1024 * 1024
NAMESPACES = ("/", "/messages")

CHAT_NOT_FOUND = {"success": False, "error": {"code": "MSG_002", "message": "Chat not found"}}


class OrjsonCodec:
    """The `json` module python-socketio encodes packets with."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


def new_id() -> str:
    """24 hex characters, creation time first, like WhatsChat's ids."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class User:
    id: str
    username: str
    email: str
    password: str
    created_at: str

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "avatar": None,
            "status": "",
            "role": "user",
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
        }


@dataclass
class Chat:
    id: str
    type: str
    name: str
    members: list[User]
    created_at: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        participants = [
            {"id": u.id, "username": u.username, "avatar": None, "role": "member", "joinedAt": self.created_at}
            for u in self.members
        ]
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "participants": participants,
            "participantCount": len(participants),
            "createdBy": self.members[0].id,
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
        }


@dataclass
class State:
    """Everything the server knows; one per app."""

    sio: socketio.AsyncServer
    users: dict[str, User] = field(default_factory=dict)
    by_email: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, User] = field(default_factory=dict)
    chats: dict[str, Chat] = field(default_factory=dict)
    chats_of: dict[str, list[Chat]] = field(default_factory=dict)  # user id -> chats
    sockets_of: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # user id -> {(namespace, sid)}
    socket_user: dict[str, User] = field(default_factory=dict)  # sid -> user

    def login(self, user: User) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = user
        return {"user": user.public(), "token": token, "refreshToken": secrets.token_urlsafe(32)}

    async def create_chat(self, kind: str, name: str, members: list[User]) -> Chat:
        chat = Chat(new_id(), kind, name, members, now())
        self.chats[chat.id] = chat
        for member in members:
            self.chats_of.setdefault(member.id, []).append(chat)
            for namespace, sid in list(self.sockets_of.get(member.id, ())):
                await self.sio.enter_room(sid, chat.id, namespace=namespace)
        return chat


STATE = web.AppKey("baseline_state", State)


def answer(data: Any, status: int = 200) -> web.Response:
    return reply({"success": True, "data": data}, status)


def failure(status: int, code: str, message: str) -> web.Response:
    return reply({"success": False, "error": {"code": code, "message": message}}, status)


def reply(envelope: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=orjson.dumps(envelope), status=status, content_type="application/json")


async def body(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        data = None
    return data if isinstance(data, dict) else {}


def caller(request: web.Request) -> User | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return request.app[STATE].tokens.get(token) if scheme == "Bearer" else None


async def health(_: web.Request) -> web.Response:
    return answer({"status": "ok"})


async def register(request: web.Request) -> web.Response:
    state, data = request.app[STATE], await body(request)
    username, email, password = data.get("username"), data.get("email"), data.get("password")
    if not (isinstance(username, str) and isinstance(email, str) and isinstance(password, str)):
        return failure(422, "VAL_001", "Validation failed")
    if email.lower() in state.by_email:
        return failure(409, "RES_001", "Email already registered")
    user = User(new_id(), username, email.lower(), password, now())
    state.users[user.id] = user
    state.by_email[user.email] = user
    return answer(state.login(user), status=201)


async def login(request: web.Request) -> web.Response:
    state, data = request.app[STATE], await body(request)
    email, password = data.get("email"), data.get("password")
    user = state.by_email.get(email.lower()) if isinstance(email, str) else None
    if user is None or password != user.password:
        return failure(401, "AUTH_003", "Invalid credentials")
    return answer(state.login(user))


async def create_chat(request: web.Request, kind: str | None = None) -> web.Response:
    me = caller(request)
    if me is None:
        return failure(401, "AUTH_001", "Authentication required")
    state, data = request.app[STATE], await body(request)
    ids = data.get("participants")
    others = [state.users.get(i) for i in ids if isinstance(i, str) and i != me.id] if isinstance(ids, list) else []
    if not others or None in others:
        return failure(404, "AUTH_002", "User not found")
    members = [me, *dict.fromkeys(u for u in others if u is not None)]
    kind = kind or ("group" if data.get("type") == "group" else "private")
    name = str(data.get("name") or "") if kind == "group" else members[1].username
    chat = await state.create_chat(kind, name, members)
    return answer(chat.public(), status=201)


async def create_group(request: web.Request) -> web.Response:
    return await create_chat(request, "group")


class ChatNamespace(socketio.AsyncNamespace):
    """The handlers of one namespace; `/` and `/messages` each get an instance."""

    def __init__(self, namespace: str, state: State) -> None:
        super().__init__(namespace)
        self.state = state

    async def on_connect(self, sid: str, _environ: dict[str, Any], auth: Any = None) -> bool:
        token = auth.get("token") if isinstance(auth, dict) else None
        user = self.state.tokens.get(token) if isinstance(token, str) else None
        if user is None:
            return False
        self.state.socket_user[sid] = user
        self.state.sockets_of.setdefault(user.id, set()).add((self.namespace, sid))
        for chat in self.state.chats_of.get(user.id, ()):
            await self.enter_room(sid, chat.id)
        await self.emit("authenticated", {"user": user.public()}, to=sid)
        return True

    async def on_disconnect(self, sid: str, _reason: str | None = None) -> None:
        user = self.state.socket_user.pop(sid, None)
        if user is not None:
            self.state.sockets_of.get(user.id, set()).discard((self.namespace, sid))

    async def on_send_message(self, sid: str, data: Any) -> dict[str, Any]:
        user = self.state.socket_user.get(sid)
        chat_id = data.get("chatId") if isinstance(data, dict) else None
        chat = self.state.chats.get(chat_id) if isinstance(chat_id, str) else None
        if user is None or chat is None or user not in chat.members:
            return CHAT_NOT_FOUND
        stamp = now()
        message = {
            "id": new_id(),
            "chatId": chat.id,
            "senderId": user.id,
            "sender": {"id": user.id, "username": user.username, "avatar": None},
            "content": data.get("content"),
            "type": data.get("type") or "text",
            "metadata": None,
            "replyTo": None,
            "clientId": data.get("clientId"),
            "status": "sent",
            "editedAt": None,
            "deleted": False,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        chat.messages.append(message)
        for namespace in NAMESPACES:  # a chat's sockets may be on either namespace
            await self.server.emit("new_message", message, room=chat.id, skip_sid=sid, namespace=namespace)
        return {"success": True, "data": message}


def create_app() -> web.Application:
    """The server, built but not started."""
    app = web.Application()
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        json=OrjsonCodec,
        cors_allowed_origins="*",
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        max_http_buffer_size=MAX_PAYLOAD,
        logger=False,
        engineio_logger=False,
    )
    state = State(sio)
    app[STATE] = state
    for namespace in NAMESPACES:
        sio.register_namespace(ChatNamespace(namespace, state))
    sio.attach(app)
    app.router.add_get("/api/v1/health", health)
    app.router.add_post("/api/v1/auth/register", register)
    app.router.add_post("/api/v1/auth/login", login)
    app.router.add_post("/api/v1/chats", create_chat)
    app.router.add_post("/api/v1/groups", create_group)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description="A bare python-socketio chat server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
