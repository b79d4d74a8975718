"""The Socket.IO server as configured: its manager, codec, origins and limits; its namespaces; its goodbye.

The app factory calls these three (`server.app`); everything Socket.IO-specific
about building the server lives here, beside the classes it combines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handlers.sio.codec import JsonPacket, OrjsonCodec
from handlers.sio.managers import LocalManager, SharedManager
from handlers.sio.namespaces import build_namespaces
from handlers.sio.server import SocketServer
from models.services import Services

if TYPE_CHECKING:
    from server.config import Config

log = logging.getLogger(__name__)
CLOSE_SECONDS = 3.0  # at shutdown: how long events already received may take to finish


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


def create_server(config: Config) -> SocketServer:
    """The Socket.IO server; with `redis.url`, its emits reach the sockets of every process."""
    cors = config.socketio.cors_origins
    redis = config.redis  # the channel is this deployment's own (`redis.deployment`, `redis.channel`)
    manager = SharedManager(redis.url, channel=redis.channel_name) if redis.url else LocalManager()
    return SocketServer(
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


def register_namespaces(sio: SocketServer, services: Services, auth_timeout: float) -> None:
    """Every namespace, built once with the services it calls (python-socketio keeps one instance each)."""
    for namespace in build_namespaces(services, auth_timeout):
        sio.register_namespace(namespace)


async def close_sockets(sio: SocketServer, grace: float = CLOSE_SECONDS) -> None:
    """Tell every client to reconnect elsewhere, and let the events they sent finish (at most `grace` s).

    Each connection's transport closes without a Socket.IO DISCONNECT, which
    would tell socket.io-client not to come back (`EngineServer.close_all`).
    Called when the server stops, before aiohttp waits for running requests
    (a WebSocket is one until it closes) and before the services and the store
    close; a second call finds nothing left to close.
    """
    closed = await sio.eio.close_all(grace)
    if closed:
        log.info("%d Socket.IO connections closed; their clients reconnect", closed)
