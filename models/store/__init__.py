"""The store backend chosen by configuration."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models.store.base import ConstraintViolation, DuplicateKey, Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from server.config import Config

__all__ = [
    "DEFAULT_MONGODB_URL",
    "ConstraintViolation",
    "DuplicateKey",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "create_store",
]

DEFAULT_MONGODB_URL = "mongodb://localhost:27017/whatschat"


def create_store(config: Config, mongo_client: Callable[[str], Any] | None = None) -> Store:
    """The configured backend. `mongo_client` replaces `pymongo.AsyncMongoClient` (tests add a command listener)."""
    if config.database.backend == "sqlite":
        from models.store.sqlite import SqliteStore

        return SqliteStore(config.in_data_dir(config.database.path))
    if config.database.backend == "mongodb":
        from models.store.mongo import MongoStore

        url = config.database.url or DEFAULT_MONGODB_URL
        if mongo_client is None:
            return MongoStore(url, client=_bounded_client(url, config.database.server_selection_timeout))
        return MongoStore(url, client=mongo_client)
    raise ValueError(f"database.backend {config.database.backend!r} is not available in this build")


def _bounded_client(url: str, seconds: float) -> Callable[[str], Any]:
    """`AsyncMongoClient` that gives up finding a server after `seconds` (PyMongo waits 30 s by default).

    A `serverSelectionTimeoutMS` written in the URL wins over the setting.
    """
    from pymongo import AsyncMongoClient

    if "serverselectiontimeoutms=" in url.lower():
        return AsyncMongoClient
    return functools.partial(AsyncMongoClient, serverSelectionTimeoutMS=int(seconds * 1000))
