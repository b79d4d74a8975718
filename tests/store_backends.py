"""The store backends the contract suite runs on, as one parametrised fixture.

A test that asks for `store` (or `backend`) runs once per backend; one that
should run on some only says `@pytest.mark.parametrize("backend", MONGO_BACKENDS, indirect=True)`.

- `sqlite`: a file in the test's temporary folder, always.
- `ferretdb`: `MongoStore` on FerretDB 1.24 (`tests/ferretdb_support.py`), a real
  MongoDB wire-protocol server, always (CI fails without it), so every MongoDB code
  path runs on every commit through the real driver; a database per test.
- `mongodb`: `MongoStore` on the real server at `WHATSCHAT_TEST_MONGODB_URL`, when
  that is set; each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from models.store.base import Store
from models.store.mongo import MongoStore
from models.store.sqlite import SqliteStore
from tests.ferretdb_support import shared_url

MONGODB_URL = os.environ.get("WHATSCHAT_TEST_MONGODB_URL", "")

SQLITE = pytest.param("sqlite", id="sqlite")
FERRETDB = pytest.param("ferretdb", id="ferretdb")
# the real server only when there is one: no skip line per test on machines that cannot have it
MONGODB = [pytest.param("mongodb", id="mongodb")] if MONGODB_URL else []
ALL_BACKENDS = [SQLITE, FERRETDB, *MONGODB]
MONGO_BACKENDS = [FERRETDB, *MONGODB]
# for the few checks only a real server can make: collected only when there is one (CI must not skip)
REAL_MONGODB = MONGODB


class Backend:
    """Opens stores of one backend on one storage, so a test can close and reopen it."""

    def __init__(self, kind: str, tmp_path: Any) -> None:
        self.kind = kind
        self.stores: list[Store] = []
        self.database = f"whatschat_test_{uuid.uuid4().hex[:16]}"
        self.path = tmp_path / "store.db"
        self.url = shared_url() if kind == "ferretdb" else MONGODB_URL

    def new(self, client: Callable[[str], Any] = AsyncMongoClient) -> Store:
        """`client` makes a MongoDB kind's client from its URL: a test passes one with event listeners to watch it."""
        if self.kind == "sqlite":
            store: Store = SqliteStore(self.path)
        else:
            store = MongoStore(self.url, database=self.database, client=client)
        self.stores.append(store)
        return store

    def unreachable(self) -> Store:
        """A store of this backend whose storage cannot be reached: a directory for SQLite, no server for MongoDB."""
        if self.kind == "sqlite":
            store: Store = SqliteStore(self.path.parent)
        else:  # nothing listens on port 1
            store = MongoStore("mongodb://127.0.0.1:1/whatschat?serverSelectionTimeoutMS=300")
        self.stores.append(store)
        return store

    async def open(self, client: Callable[[str], Any] = AsyncMongoClient) -> Store:
        store = self.new(client)
        await store.open()
        return store

    async def cleanup(self) -> None:
        for store in self.stores:
            await store.close()
        if self.kind in ("mongodb", "ferretdb"):
            client: AsyncMongoClient[Any] = AsyncMongoClient(self.url)
            try:
                await client.drop_database(self.database)
            finally:
                await client.close()


@pytest.fixture(params=ALL_BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Backend]:
    chosen = Backend(request.param, tmp_path)
    yield chosen
    await chosen.cleanup()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()
