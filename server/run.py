"""One server process: take the address, open what the app needs, serve, and stop within a bound.

The order is what makes failures plain. The address is bound first, before
anything opens, so a taken port fails at once; the store, Redis and the services
open next (the app's cleanup contexts); only then does the socket listen, and
only then is "listening" logged. SIGTERM or SIGINT asks for a stop: the listening
socket closes, every Socket.IO client is told to reconnect elsewhere, in-flight
events finish, then Redis and the store close. A second signal, or a stop that
overruns `STOP_SECONDS`, ends the process at once: it never outlives its welcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from handlers.rest.middleware import REQUEST_ID
from server.config import Config
from server.failures import ListenFailed
from server.logs import redact

log = logging.getLogger("server")

# after a stop is asked for (or a start failed), the process has this long to exit before it is ended
STOP_SECONDS = 8.0
# how long aiohttp waits for requests still running once the sockets are closed (then they are cancelled)
REQUEST_GRACE = 3.0


class AccessLogger(web.AbstractAccessLogger):
    """Access lines with the request's id and without secrets (`?token=` in Socket.IO URLs is redacted).

    aiohttp writes the line after the middlewares returned, when the request id's
    context variable is already reset: the id comes from the request itself.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        rid = request.get(REQUEST_ID) or response.headers.get("X-Request-ID")
        self.logger.info(
            redact(f'{request.remote} "{request.method} {request.path_qs}" {response.status} {time * 1000:.1f}ms'),
            extra={"request_id": rid},
        )


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def bind(host: str, port: int, reuse_port: bool = False) -> list[socket.socket]:
    """Sockets bound to every address of `host` (not listening yet); `ListenFailed` says why not.

    Bound before the app opens anything, so a taken port costs nothing to find
    out. With `reuse_port`, processes of one user share the port (SO_REUSEPORT).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenFailed(host, port, exc) from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenFailed(host, port, exc) from None
    return sockets


def exit_deadline(seconds: float = STOP_SECONDS) -> None:
    """End the process in `seconds` if it has not exited by then, whatever holds it (a thread, a stuck close).

    A daemon timer: a process that exits in time never notices it.
    """

    def give_up() -> None:
        os.write(2, f"error: the server did not stop within {seconds:g} s; exiting now\n".encode())
        os._exit(1)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()


def serve(config: Config, reuse_port: bool = False, parent: int | None = None) -> None:
    """Run one server process until SIGTERM or SIGINT; raises what stopped it from starting."""
    install_uvloop()
    asyncio.run(_serve(config, reuse_port, parent))


async def _serve(config: Config, reuse_port: bool, parent: int | None) -> None:
    from server.app import create_app

    host, port = config.server.host, config.server.port
    sockets = bind(host, port, reuse_port)
    stop = asyncio.Event()
    _on_stop_signals(stop)
    app = create_app(config)
    if parent is not None:
        app.cleanup_ctx.append(orphan_watch(parent))
    runner = web.AppRunner(app, access_log_class=AccessLogger, shutdown_timeout=REQUEST_GRACE)
    try:
        await runner.setup()  # the store, Redis and the services open here (the app's cleanup contexts)
        if not stop.is_set():
            for sock in sockets:
                await web.SockSite(runner, sock, shutdown_timeout=REQUEST_GRACE).start()
            log.info(
                "WhatsChat listening on http://%s:%s (store: %s, pid %d)",
                host,
                port,
                config.database.backend,
                os.getpid(),
            )
            await stop.wait()
            log.info("stopping: clients are told to reconnect, then Redis and the store close")
    finally:
        exit_deadline()
        await runner.cleanup()
        for sock in sockets:
            sock.close()


def _on_stop_signals(stop: asyncio.Event) -> None:
    """The first SIGTERM or SIGINT stops gracefully; a second one ends the process at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            os.write(2, f"error: signal {signum} again: exiting now\n".encode())
            os._exit(1)
        log.info("signal %d received", signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def orphan_watch(parent: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """A worker whose supervisor died (SIGKILL leaves no time to stop the children) stops by itself."""

    async def context(_: web.Application) -> AsyncIterator[None]:
        async def watch() -> None:
            while True:
                await asyncio.sleep(1.0)
                if os.getppid() != parent:
                    break
            log.warning("the supervising process %d is gone; stopping", parent)
            os.kill(os.getpid(), signal.SIGTERM)

        task = asyncio.ensure_future(watch())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context
