"""The embedded default backend: one SQLite file through aiosqlite.

WAL lets readers run while a write commits; `synchronous=NORMAL` keeps every
committed transaction across a process crash (SIGKILL), which is the promise an
acknowledgement makes. The schema is versioned with `PRAGMA user_version`: each
entry of `MIGRATIONS` runs once, in order, inside a transaction. Every lookup the
API makes has an index; `EXPLAIN QUERY PLAN` checks in the tests keep it so.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from models.store.base import DuplicateKey, Store, StoreError
from models.store.sqlite_schema import MIGRATIONS


def placeholders(values: list[Any]) -> str:
    return ", ".join("?" * len(values))


def like_pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def duplicate_key(exc: sqlite3.IntegrityError) -> DuplicateKey:
    """Name the unique field from SQLite's message (`UNIQUE constraint failed: users.email`)."""
    text = str(exc)
    column = text.rsplit(".", 1)[-1] if "UNIQUE" in text else "id"
    return DuplicateKey(column)


class SqliteBase(Store):
    """The connection, the migrations and the query helpers the table groups share."""

    name = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        # All writes share one connection, so they take turns: otherwise a single
        # statement could run inside another request's open transaction and be
        # rolled back with it, and a second BEGIN would fail outright.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def open(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
            await self._db.execute(f"PRAGMA {pragma}")
        await self._migrate()

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            (version,) = await cur.fetchone()  # type: ignore[misc]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self.db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> None:
        try:
            await self._one("SELECT 1")
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(str(exc)) from exc

    # helpers
    # Each helper is one trip to aiosqlite's thread (a cursor's execute, fetch and close
    # would be three): under load every trip waits for the GIL, so trips are the cost.
    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self.db.execute_fetchall(sql, tuple(params))
        return next(iter(rows), None)

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self.db.execute_fetchall(sql, tuple(params)))

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one INSERT, UPDATE or DELETE in its own transaction; return the rows it changed."""
        async with self._write_lock:
            try:
                return len(await self.db.execute_fetchall(sql + " RETURNING 1", tuple(params)))
            except sqlite3.IntegrityError as exc:
                raise duplicate_key(exc) from exc

    async def _write_returning(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """One `... RETURNING` statement in its own transaction; the rows it returned."""
        async with self._write_lock:
            return await self._all(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Several statements that commit together or not at all; integrity errors become `DuplicateKey`."""
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except sqlite3.IntegrityError as exc:
                await self.db.execute("ROLLBACK")
                raise duplicate_key(exc) from exc
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    async def explain(self, sql: str, params: Iterable[Any] = ()) -> str:
        """The query plan, for the tests that keep hot paths on indexes."""
        rows = await self._all("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(row["detail"]) for row in rows)
