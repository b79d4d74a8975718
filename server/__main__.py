"""Command line: `python -m server serve [--workers N] | create-admin EMAIL | loadtest --url URL`.

It only parses arguments, loads the configuration and runs; everything else is
built by `server.app.create_app`. `serve --workers N` is a small supervisor: it
prepares the store once, starts N copies of `serve` as child processes (sharing
the port through SO_REUSEPORT, or on consecutive ports), and stops them all on
SIGTERM or SIGINT, or when one of them exits.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from models.store.base import StoreError
from server.config import Config, ConfigError, load_config
from server.loadtest.cli import add_arguments as add_loadtest_arguments
from server.loadtest.cli import main as loadtest_main
from server.logs import redact, setup_logging

log = logging.getLogger("server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description="WhatsChat realtime chat server")
    parser.add_argument(
        "--config", default=os.environ.get("WHATSCHAT_CONFIG", "config.yaml"), help="YAML settings file"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help="server processes to start, sharing the port (SO_REUSEPORT); more than 1 needs redis.url",
    )
    serve.add_argument(
        "--consecutive-ports",
        action="store_true",
        help="with --workers: worker i listens on port+i instead (for a load balancer with sticky sessions)",
    )
    # set by `--workers` on its children: the parent's pid (they stop if it dies), and port sharing
    serve.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    admin = commands.add_parser("create-admin", help="create an administrator, or promote an existing user")
    admin.add_argument("email")
    admin.add_argument("--username", help="defaults to the part of the email before @")
    admin.add_argument("--password", help="defaults to $WHATSCHAT_ADMIN_PASSWORD, else asked for")
    loadtest = commands.add_parser("loadtest", help="load a running server with many sockets and report its speed")
    add_loadtest_arguments(loadtest)
    return parser


def _worker_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError("must be between 1 and 256")
    return value


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _AccessLogger(web.AbstractAccessLogger):
    """Access lines without secrets: `?token=` in Socket.IO URLs is redacted."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            redact(f'{request.remote} "{request.method} {request.path_qs}" {response.status} {time * 1000:.1f}ms')
        )


def serve(config: Config, reuse_port: bool = False, parent: int | None = None) -> None:
    from server.app import create_app

    _install_uvloop()
    log.info("WhatsChat on %s:%s (store: %s)", config.server.host, config.server.port, config.database.backend)
    app = create_app(config)
    if parent is not None:
        app.cleanup_ctx.append(_orphan_watch(parent))
    web.run_app(
        app,
        host=config.server.host,
        port=config.server.port,
        reuse_port=reuse_port or None,
        access_log_class=_AccessLogger,
        print=None,
    )


def _orphan_watch(parent: int) -> Callable[[web.Application], AsyncIterator[None]]:
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
        await asyncio.gather(task, return_exceptions=True)

    return context


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


STOP_GRACE = 20.0  # seconds a worker has to close its sockets after SIGTERM before SIGKILL


def serve_workers(config: Config, config_path: str, workers: int, consecutive: bool) -> int:
    """Start `workers` children of `serve` and supervise them; answers the exit code.

    Children share `server.port` (SO_REUSEPORT: the kernel spreads connections
    across them) or, with `consecutive`, listen on port, port+1, ... A child that
    exits stops the others and the supervisor (exit code 1), so a process manager
    restarts the whole group; SIGTERM or SIGINT stops them all gracefully.
    """
    if not config.redis.url:
        raise ConfigError(
            "--workers above 1 needs redis.url (WHATSCHAT_REDIS_URL): without Redis, each process would"
            " reach only its own sockets"
        )
    asyncio.run(prepare(config))
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _: object) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    host, port = config.server.host, config.server.port
    log.info(
        "WhatsChat supervisor %d: %d workers on %s:%s%s",
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
            children.append(subprocess.Popen(command, stdin=subprocess.DEVNULL))
        while not stop.wait(0.2):
            exited = next((child for child in children if child.poll() is not None), None)
            if exited is not None:
                log.error("worker %d exited with %s; stopping the others", exited.pid, exited.returncode)
                code = 1
                break
    finally:
        _stop_children(children)
    if received:
        log.info("signal %d: every worker stopped", received[0])
    return code


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            log.error("worker %d did not stop in %.0f s; killing it", child.pid, STOP_GRACE)
            child.kill()
            child.wait()


async def create_admin(config: Config, email: str, username: str, password: str) -> str:
    from models.errors import AppError
    from server.app import create_app
    from server.keys import AUTH, STORE

    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts: store and services, no listening socket
    try:
        store, auth = app[STORE], app[AUTH]
        existing = await store.get_user_by_email(email.lower())
        if existing is not None:
            await store.update_user(existing.id, {"role": "admin"})
            return f"{existing.email} is now an administrator"
        try:
            user, _ = await auth.register(username=username, email=email, password=password, role="admin")
        except AppError as exc:
            raise SystemExit(f"error: {exc.message}") from None
        return f"administrator {user.username} <{user.email}> created"
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "loadtest":  # a client of any server: no settings of this one apply
        _install_uvloop()
        sys.exit(loadtest_main(args))
    try:
        config = load_config(args.config)
        if args.command == "serve" and (args.host or args.port):
            config = config.replace(server={k: v for k, v in (("host", args.host), ("port", args.port)) if v})
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    setup_logging(config.logging.level, config.logging.format)
    if args.command == "serve":
        try:
            if args.workers > 1 and args.worker_of is None:
                sys.exit(serve_workers(config, args.config, args.workers, args.consecutive_ports))
            serve(config, reuse_port=args.reuse_port, parent=args.worker_of)
        except (ConfigError, StoreError) as exc:  # a wrong setting, or a database that does not answer
            sys.exit(f"error: {exc}")
    elif args.command == "create-admin":
        from marshmallow import ValidationError

        from schemas.auth import Register

        username = args.username or re.sub(r"[^A-Za-z0-9_]", "_", args.email.split("@")[0])[:20]
        password = args.password or os.environ.get("WHATSCHAT_ADMIN_PASSWORD") or getpass.getpass("Password: ")
        try:
            Register().load({"username": username, "email": args.email, "password": password})
        except ValidationError as exc:
            sys.exit(f"error: {exc.normalized_messages()}")
        try:
            print(asyncio.run(create_admin(config, args.email, username, password)))
        except StoreError as exc:
            sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
