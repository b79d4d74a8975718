"""The application factory: one `setup_*` per concern, resources in cleanup contexts.

`create_app(config)` builds exactly the app production runs; importing this
module starts nothing. Resources open in dependency order (store, then Redis
when `redis.url` is set, then the services of `server.services`, then the
Socket.IO namespaces that call them) and close in reverse, so a failed start
never tears down what was never opened, and shutdown closes sockets before the
services, Redis and the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web

from handlers.gochat import chats as gochat_chats
from handlers.gochat import groups as gochat_groups
from handlers.gochat import users as gochat_users
from handlers.gochat import ws as gochat_ws
from handlers.rest import auth as rest_auth
from handlers.rest import calls as rest_calls
from handlers.rest import chats as rest_chats
from handlers.rest import docs as rest_docs
from handlers.rest import messages as rest_messages
from handlers.rest import users as rest_users
from handlers.rest import web as rest_web
from handlers.rest.cors import cors_middleware
from handlers.rest.middleware import errors, request_ids
from handlers.sio.notifier import RedisManager
from handlers.sio.server import SocketServer
from handlers.sio.setup import close_sockets, create_server, register_namespaces
from models.store import create_store
from server.config import Config, ConfigError
from server.keys import CONFIG, HUB, PROCESS_ID, REDIS, SERVICES, SIO, STARTED_AT, STORE
from server.redis import redis_client
from server.services import services_context

log = logging.getLogger(__name__)


def setup_socketio(app: web.Application, config: Config) -> SocketServer:
    """The Socket.IO server (`handlers.sio.setup`), served by this app; its namespaces come with the services."""
    sio = create_server(config)
    sio.attach(app)
    app[SIO] = sio
    return sio


def process_id() -> str:
    """`<hostname>:<pid>:<random>`: tells apart the processes of one deployment (a pid alone repeats)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """With `redis.url`: the process's Redis client (`app[REDIS]`) and Socket.IO's channel to the others.

    A Redis that does not answer at start-up does not stop the process: it starts
    degraded (health says so), and everything reconnects once Redis answers.
    """
    url = app[CONFIG].redis.url
    if not url:
        yield
        return
    client = redis_client(url)
    answered = True
    try:
        await asyncio.wait_for(client.ping(), 2.0)
    except Exception as exc:
        answered = False
        log.warning("Redis at redis.url does not answer (%s); starting degraded until it does", exc)
    app[REDIS] = client
    manager = app[SIO].manager
    if isinstance(manager, RedisManager):
        await manager.start(wait=2.0 if answered else 0.0)
    try:
        yield
    finally:
        if isinstance(manager, RedisManager):
            await manager.stop()
        await client.aclose()


async def store_context(app: web.Application) -> AsyncIterator[None]:
    try:
        store = create_store(app[CONFIG])
    except ValueError as exc:  # a backend this build does not have
        raise ConfigError(str(exc)) from None
    await store.open()
    app[STORE] = store
    yield
    await store.close()


async def sockets_context(app: web.Application) -> AsyncIterator[None]:
    """The namespaces, built with the services; at shutdown every socket is closed before the services are."""
    sio = app[SIO]
    register_namespaces(sio, app[SERVICES], app[CONFIG].socketio.auth_timeout)
    yield
    await close_sockets(sio)


async def tell_sockets_to_reconnect(app: web.Application) -> None:
    """At the start of a stop, before aiohttp waits for running requests (each WebSocket is one)."""
    await close_sockets(app[SIO])
    if HUB in app:
        app[HUB].close_all(int(WSCloseCode.GOING_AWAY), "server stopping")


def create_app(config: Config) -> web.Application:
    app = web.Application(
        middlewares=[request_ids, cors_middleware(config.server.cors_origins), errors],
        client_max_size=config.server.max_body_size,
    )
    app[CONFIG] = config
    app[STARTED_AT] = time.monotonic()
    app[PROCESS_ID] = process_id()
    setup_socketio(app, config)
    app.router.add_routes(rest_auth.routes)
    app.router.add_routes(rest_users.routes)
    app.router.add_routes(rest_chats.routes)
    app.router.add_routes(rest_messages.routes)
    app.router.add_routes(rest_calls.routes)
    app.router.add_routes(rest_docs.routes)
    app.router.add_routes(rest_web.routes)
    app.router.add_routes(gochat_users.routes)  # the Go Chat Web door: `/api` and `/ws`
    app.router.add_routes(gochat_chats.routes)
    app.router.add_routes(gochat_groups.routes)
    app.router.add_routes(gochat_ws.routes)
    app.on_startup.append(rest_docs.build_documents)
    app.on_shutdown.append(tell_sockets_to_reconnect)
    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(redis_context)  # after the store, before the services that use it
    app.cleanup_ctx.append(services_context)
    app.cleanup_ctx.append(sockets_context)  # closes first: no socket outlives the services it calls
    return app
