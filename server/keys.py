"""Typed application keys: every shared object lives on the app, none in a global."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from handlers.gochat.hub import WsHub
    from handlers.sio.server import SocketServer
    from models.services import Services
    from models.store.base import Store
    from server.config import Config

CONFIG: web.AppKey[Config] = web.AppKey("config")
STORE: web.AppKey[Store] = web.AppKey("store")
# every domain service, for REST handlers and Socket.IO namespaces alike (`server.services`)
SERVICES: web.AppKey[Services] = web.AppKey("services")
SIO: web.AppKey[SocketServer] = web.AppKey("sio")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
# present only when `redis.url` is set: the one client of this process (`app.get(REDIS)` is None without it)
REDIS: web.AppKey[Redis] = web.AppKey("redis")
# "<hostname>:<pid>:<random>", unique per server process; health reports it
PROCESS_ID: web.AppKey[str] = web.AppKey("process_id")
# the plain WebSocket door's connections in this process (`handlers.gochat.hub`), built with the services
HUB: web.AppKey[WsHub] = web.AppKey("ws_hub")
