"""Typed application keys: every shared object lives on the app, none in a global."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import socketio
    from redis.asyncio import Redis

    from models.auth import AuthService
    from models.calls import CallService
    from models.chats import ChatService
    from models.messages import MessageService
    from models.presence import PresenceService
    from models.store.base import Store
    from models.uploads import UploadService
    from models.users import UserService
    from server.config import Config

CONFIG: web.AppKey[Config] = web.AppKey("config")
STORE: web.AppKey[Store] = web.AppKey("store")
AUTH: web.AppKey[AuthService] = web.AppKey("auth")
USERS: web.AppKey[UserService] = web.AppKey("users")
PRESENCE: web.AppKey[PresenceService] = web.AppKey("presence")
SIO: web.AppKey[socketio.AsyncServer] = web.AppKey("sio")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
CHATS: web.AppKey[ChatService] = web.AppKey("chats")
MESSAGES: web.AppKey[MessageService] = web.AppKey("messages")
UPLOADS: web.AppKey[UploadService] = web.AppKey("uploads")
CALLS: web.AppKey[CallService] = web.AppKey("calls")
# present only when `redis.url` is set: the one client of this process (`app.get(REDIS)` is None without it)
REDIS: web.AppKey[Redis] = web.AppKey("redis")
# "<hostname>:<pid>:<random>", unique per server process; health reports it
PROCESS_ID: web.AppKey[str] = web.AppKey("process_id")
