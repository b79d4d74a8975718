"""What the command line prints when the server cannot start: one line, what is wrong and what to do.

Every start-up failure ends as `error: <what> ; <what to do>` on stderr and a
non-zero exit status. The traceback is logged only at `logging.level: DEBUG`:
a newcomer should read a sentence, not a stack.
"""

from __future__ import annotations

import errno
import os
import pwd
import socket
import sqlite3
from typing import TYPE_CHECKING

from models.store.base import StoreError

if TYPE_CHECKING:
    from server.config import Config


class StartupFailed(Exception):
    """Start-up cannot go on; the message is the whole line to print (after `error: `)."""


class ListenFailed(StartupFailed):
    """The server's address cannot be bound (taken, not this machine's, privileged)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        self.host, self.port, self.cause = host, port, cause
        super().__init__(f"cannot listen on {host}:{port}: {_listen_advice(host, cause)}")


def _listen_advice(host: str, cause: OSError) -> str:
    if cause.errno == errno.EADDRINUSE:
        return (
            "the port is already in use (another WhatsChat, or another program, listens there);"
            " stop it, or choose another port with server.port (WHATSCHAT_SERVER_PORT, or --port)"
        )
    if cause.errno == errno.EACCES:
        return (
            "permission denied (ports below 1024 need privileges);"
            " choose a port above 1023 with server.port (WHATSCHAT_SERVER_PORT, or --port)"
        )
    if cause.errno == errno.EADDRNOTAVAIL or isinstance(cause, socket.gaierror):
        return (
            f"{host} is not an address of this machine ({cause.strerror or cause});"
            " set server.host (WHATSCHAT_SERVER_HOST, or --host) to one of its addresses, or 0.0.0.0 for all"
        )
    return f"{cause.strerror or cause}; check server.host and server.port (WHATSCHAT_SERVER_HOST, _PORT)"


def _user() -> str:
    try:
        return f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"
    except KeyError:
        return f"uid {os.geteuid()}"


def _folder_advice(config: Config) -> str:
    return (
        f"the data folder {os.path.abspath(config.data_dir)} must be writable by the user running the server,"
        f" {_user()}: fix its permissions, or set data_dir (WHATSCHAT_DATA_DIR) to one it can write"
    )


# SQLite's primary result codes, grouped by what the person starting the server can do about them
_PERMISSIONS = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_AUTH})
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_LOCKED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _store_advice(exc: StoreError, config: Config) -> str:
    if config.database.backend == "mongodb":
        return (
            "check database.url (WHATSCHAT_DATABASE_URL) and that MongoDB runs and is reachable from here"
            f" (waited {config.database.server_selection_timeout:g} s, database.server_selection_timeout)"
        )
    cause = exc.__cause__
    if isinstance(cause, OSError):
        return _folder_advice(config)
    code = getattr(cause, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _PERMISSIONS:
        return _folder_advice(config)
    if primary in _DAMAGED:
        return "the file is damaged or is not a WhatsChat database: restore it from a backup, or move it away"
    if primary in _LOCKED:
        return "another program holds the database locked: stop it, or give this server its own database.path"
    if primary == sqlite3.SQLITE_FULL:
        return "the disk is full: free some space"
    return "see database.path and data_dir in config.yaml"


def explain(exc: BaseException, config: Config | None) -> str:
    """The one line (without `error: `) for a start-up that failed with `exc`."""
    from server.config import ConfigError

    if isinstance(exc, StartupFailed | ConfigError):
        return str(exc)
    if isinstance(exc, StoreError) and config is not None:
        return f"{exc}; {_store_advice(exc, config)}"
    if isinstance(exc, StoreError):
        return str(exc)
    if isinstance(exc, PermissionError | IsADirectoryError | NotADirectoryError | FileExistsError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOSPC, errno.EACCES)
    ):
        where = f"{exc.filename}: " if exc.filename else ""
        advice = _folder_advice(config) if config is not None else "check the data folder's permissions"
        return f"cannot write {where}{exc.strerror or exc}; {advice}"
    return (
        f"start-up failed: {type(exc).__name__}: {exc}; logging.level DEBUG (WHATSCHAT_LOGGING_LEVEL=DEBUG) shows where"
    )
