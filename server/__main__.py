"""Command line: `python -m server serve [--workers N] | create-admin EMAIL | loadtest --url URL`.

It only parses arguments, loads the configuration and runs; everything else is
built by `server.app.create_app`, run by `server.run` (one process) or
`server.workers` (`serve --workers N`, a small supervisor). Whatever stops a
start (a wrong setting, a taken port, a database that cannot be used) ends the
process with one line from `server.failures` and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
import sys

from aiohttp import web

from models.errors import AppError
from server.config import Config, ConfigError, load_config
from server.failures import explain
from server.loadtest.cli import add_arguments as add_loadtest_arguments
from server.loadtest.cli import main as loadtest_main
from server.logs import setup_logging
from server.run import exit_deadline, install_uvloop, serve
from server.workers import serve_workers

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


def app_error_line(error: AppError) -> str:
    """An error as the REST envelope says it, in one line: `Validation failed (VAL_001): password: ...`."""
    line = f"{error.message} ({error.code})"
    if isinstance(error.details, dict):
        fields = [f"{name}: {' '.join(map(str, _messages(text)))}" for name, text in error.details.items()]
        line += ": " + "; ".join(fields)
    return line


def _messages(value: object) -> list[object]:
    if isinstance(value, list):
        return [item for entry in value for item in _messages(entry)]
    if isinstance(value, dict):
        return [f"{key}: {' '.join(map(str, _messages(entry)))}" for key, entry in value.items()]
    return [value]


async def create_admin(config: Config, email: str, username: str, password: str) -> str:
    """Promote the user with `email`, or register one as an administrator; `AppError` says why not."""
    from server.app import create_app
    from server.keys import SERVICES, STORE

    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts: store and services, no listening socket
    try:
        store, auth = app[STORE], app[SERVICES].auth
        existing = await store.get_user_by_email(email.lower())
        if existing is not None:
            await store.update_user(existing.id, {"role": "admin"})
            return f"{existing.email} is now an administrator"
        user, _ = await auth.register(username=username, email=email, password=password, role="admin")
        return f"administrator {user.username} <{user.email}> created"
    finally:
        await runner.cleanup()


def _create_admin(config: Config, args: argparse.Namespace) -> None:
    from schemas.auth import Register
    from schemas.common import load

    username = args.username or re.sub(r"[^A-Za-z0-9_]", "_", args.email.split("@")[0])[:20]
    password = args.password or os.environ.get("WHATSCHAT_ADMIN_PASSWORD") or getpass.getpass("Password: ")
    try:
        load(Register(), {"username": username, "email": args.email, "password": password})
        print(asyncio.run(create_admin(config, args.email, username, password)))
    except AppError as exc:
        sys.exit(f"error: {app_error_line(exc)}")


def _fail(exc: BaseException, config: Config | None) -> None:
    """Exit with one line for `exc`; its traceback goes to the log at DEBUG only."""
    log.debug("start-up failed", exc_info=exc)
    exit_deadline()  # whatever half-opened thread there may be, the process ends
    sys.exit(f"error: {explain(exc, config)}")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "loadtest":  # a client of any server: no settings of this one apply
        install_uvloop()
        sys.exit(loadtest_main(args))
    try:
        config = load_config(args.config)
        if args.command == "serve" and (args.host or args.port):
            config = config.replace(server={k: v for k, v in (("host", args.host), ("port", args.port)) if v})
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    setup_logging(config.logging.level, config.logging.format)
    try:
        if args.command == "serve" and args.workers > 1 and args.worker_of is None:
            sys.exit(serve_workers(config, args.config, args.workers, args.consecutive_ports))
        elif args.command == "serve":
            serve(config, reuse_port=args.reuse_port, parent=args.worker_of)
        elif args.command == "create-admin":
            _create_admin(config, args)
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        sys.exit(130)
    except Exception as exc:  # a wrong setting, a taken port, a database that does not answer, ...
        _fail(exc, config)


if __name__ == "__main__":
    main()
