"""The store backend chosen by configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.store.base import DuplicateKey, Store, StoreError

if TYPE_CHECKING:
    from server.config import Config

__all__ = ["DuplicateKey", "Store", "StoreError", "create_store"]


def create_store(config: Config) -> Store:
    if config.database.backend == "sqlite":
        from models.store.sqlite import SqliteStore

        return SqliteStore(config.in_data_dir(config.database.path))
    raise ValueError(f"database.backend {config.database.backend!r} is not available in this build")
