"""Command line: `python -m server serve | create-admin EMAIL`.

It only parses arguments, loads the configuration and runs; everything else is
built by `server.app.create_app`.
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

from models.store.base import StoreError
from server.config import Config, ConfigError, load_config
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
    admin = commands.add_parser("create-admin", help="create an administrator, or promote an existing user")
    admin.add_argument("email")
    admin.add_argument("--username", help="defaults to the part of the email before @")
    admin.add_argument("--password", help="defaults to $WHATSCHAT_ADMIN_PASSWORD, else asked for")
    return parser


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


def serve(config: Config) -> None:
    from server.app import create_app

    _install_uvloop()
    log.info("WhatsChat on %s:%s (store: %s)", config.server.host, config.server.port, config.database.backend)
    web.run_app(
        create_app(config),
        host=config.server.host,
        port=config.server.port,
        access_log_class=_AccessLogger,
        print=None,
    )


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
    try:
        config = load_config(args.config)
        if args.command == "serve" and (args.host or args.port):
            config = config.replace(server={k: v for k, v in (("host", args.host), ("port", args.port)) if v})
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    setup_logging(config.logging.level, config.logging.format)
    if args.command == "serve":
        try:
            serve(config)
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
