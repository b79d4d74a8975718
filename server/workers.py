"""`serve --workers N`: a small supervisor of N server processes.

Everything that can fail for all of them is checked once, here, before any
worker starts: the address (bound for a moment, without SO_REUSEPORT, so a port
held by anything, another WhatsChat group included, is refused), Redis (the
workers need it to reach each other's sockets), the store (opened once: schema,
indexes) and the JWT secret. A failure there is one line and exit status 1 with
no worker started. Then the workers start; one that exits stops the others and
the supervisor (status 1, for a process manager to restart the group), and
SIGTERM or SIGINT stops them all. Every worker is waited for (no zombie is
left), and one that overruns `STOP_GRACE` is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from server.config import Config, ConfigError
from server.failures import StartupFailed
from server.redis import redis_client
from server.run import bind

log = logging.getLogger("server")

STOP_GRACE = 10.0  # seconds a worker has to stop after SIGTERM (it gives itself 8) before SIGKILL
REDIS_SECONDS = 3.0  # how long Redis has to answer PING before the start is refused


async def prepare(config: Config) -> None:
    """What the workers would otherwise race to do: open the store once (schema, indexes), make the secret."""
    from models.store import create_store
    from models.tokens import load_or_create_secret

    try:
        store = create_store(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    await store.open()
    await store.close()
    try:
        load_or_create_secret(config.auth.jwt_secret, config.data_path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


async def check_redis(url: str) -> None:
    """Redis answers PING, or `StartupFailed` says so: workers without it would each serve only their own sockets."""
    client = redis_client(url, socket_connect_timeout=REDIS_SECONDS, socket_timeout=REDIS_SECONDS)
    try:
        await asyncio.wait_for(client.ping(), REDIS_SECONDS)
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise StartupFailed(
            f"Redis at redis.url does not answer ({reason}): several workers need it to reach each other's"
            " sockets; start Redis, or fix redis.url (WHATSCHAT_REDIS_URL)"
        ) from None
    finally:
        await client.aclose()


def check_ports(host: str, port: int, count: int) -> None:
    """Each port the workers will use is free now (bound for a moment without SO_REUSEPORT); else `ListenFailed`."""
    for offset in range(count):
        for sock in bind(host, port + offset):
            sock.close()


def serve_workers(config: Config, config_path: str, workers: int, consecutive: bool) -> int:
    """Start `workers` children of `serve` and supervise them; answers the exit code.

    Children share `server.port` (SO_REUSEPORT: the kernel spreads connections
    across them) or, with `consecutive`, listen on port, port+1, ...
    """
    if not config.redis.url:
        raise ConfigError(
            "--workers above 1 needs redis.url (WHATSCHAT_REDIS_URL): without Redis, each process would"
            " reach only its own sockets"
        )
    host, port = config.server.host, config.server.port
    check_ports(host, port, workers if consecutive else 1)
    asyncio.run(check_redis(config.redis.url))
    asyncio.run(prepare(config))
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _: object) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    log.info(
        "supervisor %d: starting %d workers on %s:%s%s",
        os.getpid(),
        workers,
        host,
        f"{port}-{port + workers - 1}" if consecutive else port,
        "" if consecutive else " (shared port)",
    )
    children: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        for index in range(workers):
            if stop.is_set():
                break
            command = [sys.executable, "-m", "server", "--config", config_path, "serve", "--host", host]
            command += ["--port", str(port + index if consecutive else port), "--worker-of", str(os.getpid())]
            if not consecutive:
                command.append("--reuse-port")
            # a process group of its own: a Ctrl-C in the terminal reaches the supervisor, which stops them once
            children.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, process_group=0))
        while not stop.wait(0.2):
            exited = next((child for child in children if child.poll() is not None), None)
            if exited is not None:
                log.error("worker %d exited with %s; stopping the others", exited.pid, exited.returncode)
                code = 1
                break
    finally:
        stop_children(children)
    if received:
        log.info("signal %d: every worker stopped", received[0])
    return code


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every child still running, then wait for each (reaping it); SIGKILL after `STOP_GRACE`."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE  # one grace for all of them, not one each
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker %d did not stop in %.0f s; killing it", child.pid, STOP_GRACE)
            child.kill()
            child.wait()
