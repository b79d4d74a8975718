"""The application factory: one `setup_*` per concern, resources in cleanup contexts.

`create_app(config)` builds exactly the app production runs; importing this
module starts nothing. Resources open in dependency order (store, then Redis
when `redis.url` is set, then services, then Socket.IO) and close in reverse, so
a failed start never tears down what was never opened, and shutdown closes
sockets before Redis and the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
import socketio
from aiohttp import web

from handlers.rest import auth as rest_auth
from handlers.rest import calls as rest_calls
from handlers.rest import chats as rest_chats
from handlers.rest import docs as rest_docs
from handlers.rest import messages as rest_messages
from handlers.rest import users as rest_users
from handlers.rest import web as rest_web
from handlers.rest.cors import cors_middleware
from handlers.rest.middleware import errors, request_ids
from handlers.sio.base import CompactRooms, Services, SocketServer
from handlers.sio.fanout import DirectFanoutManager
from handlers.sio.namespaces import build_namespaces
from handlers.sio.notifier import REDIS_OPTIONS, RedisManager, SocketNotifier
from models.auth import AuthService, LoginPolicy
from models.calls import CallService
from models.chats import ChatService
from models.live_calls import MemoryLiveCalls, RedisLiveCalls
from models.mail import Mailer
from models.messages import MessageService
from models.passwords import PasswordHasher
from models.presence import PresenceService
from models.ratelimit import Budgets, RateLimiter, RedisBudgets, RedisRateLimiter
from models.store import create_store
from models.tokens import TokenSigner, load_or_create_secret
from models.uploads import UploadService
from models.users import UserService
from server.config import Config, ConfigError
from server.keys import (
    AUTH,
    CALLS,
    CHATS,
    CONFIG,
    MESSAGES,
    PRESENCE,
    PROCESS_ID,
    REDIS,
    SIO,
    STARTED_AT,
    STORE,
    UPLOADS,
    USERS,
)

log = logging.getLogger(__name__)


class OrjsonCodec:
    """The `json` module python-socketio and python-engineio encode packets with."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        """orjson, falling back to the standard parser for what it refuses.

        Python's and some other clients write `NaN` and `Infinity`, which are not
        JSON; orjson rejects them and the whole packet (ack id included) would be
        dropped unanswered. Parsed leniently, the event reaches validation and
        gets its error ack like any other bad payload.
        """
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)


class JsonPacket(socketio.packet.Packet):
    """Socket.IO packets whose outgoing payloads are JSON only.

    Every emit and ack would otherwise be walked recursively looking for bytes to
    send as binary attachments; WhatsChat's events never carry bytes (files go
    through `POST /uploads`), and the walk cost more than encoding the packet.
    Incoming binary packets are still decoded (and refused by validation).
    """

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        return False


def allowed_origins(listed: list[str]) -> Callable[[str | None, dict[str, Any]], bool]:
    """The listed origins, and always this server's own (the web client it serves at `/`).

    Browsers send `Origin` on the WebSocket upgrade and on long-polling requests;
    a list that forgot the server's own address would lock its own page out.
    """
    allowed = set(listed)

    def check(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None or origin in allowed:
            return True
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin == own

    return check


class LocalManager(CompactRooms, DirectFanoutManager):
    """The sockets of this process: rooms as plain dicts, broadcasts queued without a task per recipient."""


class SharedManager(CompactRooms, RedisManager):
    """`LocalManager` for several processes: emits go through Redis."""


def setup_socketio(app: web.Application, config: Config) -> SocketServer:
    """The Socket.IO server; with `redis.url`, its emits reach the sockets of every process."""
    cors = config.socketio.cors_origins
    manager = SharedManager(config.redis.url, channel="whatschat") if config.redis.url else LocalManager()
    sio = SocketServer(
        client_manager=manager,
        async_mode="aiohttp",
        serializer=JsonPacket,
        json=OrjsonCodec,
        cors_allowed_origins="*" if cors == ["*"] else allowed_origins(cors),
        ping_interval=config.socketio.ping_interval,
        ping_timeout=config.socketio.ping_timeout,
        max_http_buffer_size=config.socketio.max_payload,
        websocket_compression=config.socketio.websocket_compression,
        ephemeral_queue=config.limits.ephemeral_queue,
        max_queue=config.limits.max_queue,
        always_connect=True,
        logger=False,
        engineio_logger=False,
    )
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
    try:
        client = aioredis.Redis.from_url(url, **REDIS_OPTIONS)
    except ValueError as exc:  # a URL redis-py cannot read
        raise ConfigError(f"invalid configuration: redis.url: {exc}") from None
    try:
        await asyncio.wait_for(client.ping(), 2.0)
    except Exception as exc:
        log.warning("Redis at redis.url does not answer (%s); starting degraded until it does", exc)
    app[REDIS] = client
    manager = app[SIO].manager
    if isinstance(manager, RedisManager):
        await manager.start()
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


async def services_context(app: web.Application) -> AsyncIterator[None]:
    """Domain services, wired to the store and to Socket.IO through the notifier."""
    config = app[CONFIG]
    secret, generated = load_or_create_secret(config.auth.jwt_secret, config.data_path)
    if generated:
        log.warning(
            "no auth.jwt_secret configured: using one generated in %s; production must set its own",
            config.data_path / "jwt_secret",
        )
    hasher = PasswordHasher(config.auth.bcrypt_rounds)
    sio = app[SIO]
    notifier = SocketNotifier(sio)
    # State several processes must share (login limits, budgets, presence, live calls) lives in Redis
    # when `app.get(REDIS)` is a client, in this process when it is None (no `redis.url`).
    redis = app.get(REDIS)
    mail = config.mail
    auth = AuthService(
        store=app[STORE],
        signer=TokenSigner(secret, config.auth.access_token_ttl, config.auth.refresh_token_ttl),
        hasher=hasher,
        limiter=RedisRateLimiter(redis) if redis is not None else RateLimiter(),
        mailer=Mailer(
            mail.sender,
            config.in_data_dir(mail.outbox_dir),
            mail.smtp_host,
            mail.smtp_port,
            mail.smtp_username,
            mail.smtp_password,
            mail.smtp_starttls,
        ),
        notifier=notifier,
        policy=LoginPolicy(
            config.auth.login_failures_per_account,
            config.auth.login_failures_per_address,
            config.auth.login_failure_window,
        ),
        reset_ttl=config.auth.reset_token_ttl,
        reset_url=config.mail.reset_url,
    )
    app[AUTH] = auth
    app[PRESENCE] = PresenceService(app[STORE], notifier, config.presence.grace_period, redis, app[PROCESS_ID])
    await app[PRESENCE].start()  # no-op without Redis; keeps retrying while Redis is away
    app[USERS] = UserService(app[STORE], auth, app[PRESENCE])
    rates = config.limits.budgets()
    budgets = RedisBudgets(redis, rates) if redis is not None else Budgets(rates)
    app[CHATS] = ChatService(app[STORE], app[PRESENCE], notifier)
    app[MESSAGES] = MessageService(app[STORE], app[CHATS], notifier, budgets)
    live = RedisLiveCalls(redis) if redis is not None else MemoryLiveCalls()
    app[CALLS] = CallService(app[STORE], app[CHATS], app[PRESENCE], notifier, config.calls.ring_timeout, live=live)
    await app[CALLS].start_background()
    app[UPLOADS] = UploadService(app[STORE], config.in_data_dir(config.uploads.dir), config.uploads.max_size, budgets)
    services = Services(
        auth=auth,
        users=app[USERS],
        presence=app[PRESENCE],
        chats=app[CHATS],
        messages=app[MESSAGES],
        calls=app[CALLS],
        auth_timeout=config.socketio.auth_timeout,
    )
    for namespace in build_namespaces(services):
        sio.register_namespace(namespace)
    yield
    await _close_sockets(sio)
    await app[CALLS].close()
    await app[PRESENCE].close()
    hasher.close()


async def _close_sockets(sio: socketio.AsyncServer) -> None:
    """Say goodbye to every socket before the store closes under them."""
    for namespace in list(sio.namespace_handlers):
        for sid, _ in list(sio.manager.get_participants(namespace, None)):
            try:
                await sio.disconnect(sid, namespace=namespace, ignore_queue=True)
            except Exception:  # a socket already gone is fine at shutdown
                log.debug("disconnect at shutdown failed", exc_info=True)


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
    app.on_startup.append(rest_docs.build_documents)
    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(redis_context)  # after the store, before the services that use it
    app.cleanup_ctx.append(services_context)
    return app
