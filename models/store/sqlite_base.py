"""The embedded default backend: one SQLite file through aiosqlite.

WAL lets readers run while a write commits; `synchronous=NORMAL` keeps every
committed transaction across a process crash (SIGKILL), which is the promise an
acknowledgement makes. The schema is versioned with `PRAGMA user_version`: each
entry of `MIGRATIONS` runs once, in order, inside a transaction. Every lookup the
API makes has an index; `EXPLAIN QUERY PLAN` checks in the tests keep it so.

Writes share one connection and take turns on it (`_write_lock`); reads run on
connections of their own (`readers` of them, taken in turn, `query_only`). So a
read never sees the uncommitted rows of an open `transaction()`, and never queues
behind a write's trip to the writer's thread: WAL gives each read the last
committed state. An in-memory database (`:memory:`) is private to its connection,
so there reads share the writer.

Every public coroutine is wrapped once (`translated`): the driver's errors leave
as the store errors of `models/store/base.py`, decided in one place, `store_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import aiosqlite

from models.store.base import ConstraintViolation, DuplicateKey, Store, StoreError, StoreUnavailable
from models.store.sqlite_schema import MIGRATIONS

P = ParamSpec("P")
R = TypeVar("R")


class _HasPath(Protocol):
    path: Path


S = TypeVar("S", bound=_HasPath)

# primary result codes that say the storage cannot be used now, not that the statement is wrong
_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOLFS,
        sqlite3.SQLITE_NOMEM,
    }
)
_UNIQUE = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY})


def placeholders(values: list[Any]) -> str:
    return ", ".join("?" * len(values))


def like_pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def duplicate_key(exc: sqlite3.Error) -> DuplicateKey:
    """Name the unique field from SQLite's message (`UNIQUE constraint failed: users.email`).

    A key of several columns names its last (`messages.sender_id, messages.client_id`: `client_id`).
    """
    return DuplicateKey(str(exc).rsplit(".", 1)[-1])


def store_error(exc: sqlite3.Error | OSError, path: Path) -> StoreError:
    """The store error for a driver error: this backend's one translation (see `models/store/base.py`).

    Decided by SQLite's (extended) result code, not by the exception class: an
    `OperationalError` is a locked or unreadable file as often as a wrong statement.
    """
    if isinstance(exc, OSError):  # the database's folder cannot be made
        return StoreUnavailable(f"SQLite: {exc}")
    code = getattr(exc, "sqlite_errorcode", None)
    if code in _UNIQUE:
        return duplicate_key(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return ConstraintViolation(f"SQLite: {exc}")
    if code is not None and code & 0xFF in _UNAVAILABLE:
        return StoreUnavailable(f"SQLite: {exc}: {path}")
    return StoreError(f"SQLite: {exc}")


@contextlib.contextmanager
def translating(path: Path) -> Iterator[None]:
    """Driver errors raised inside leave as store errors (`store_error`)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise store_error(exc, path) from exc


def translated(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """`method` with its driver errors translated; its first argument is the store."""

    @functools.wraps(method)
    async def run(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(store, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(exc, store.path) from exc

    return run


def _open_once(path: Path) -> None:
    """Open and close the file without aiosqlite, so a file that cannot be opened fails here.

    A connection that fails inside `aiosqlite.connect` leaves its thread to report
    to an event loop that may be closed by then, which prints a thread's traceback
    after the one-line message the command line gave.
    """
    sqlite3.connect(path).close()


class SqliteBase(Store):
    """The connections, the migrations and the query helpers the table groups share.

    Every public coroutine a subclass defines is wrapped, once, here (`translated`);
    `TypeError`/`ValueError` from the input checks pass unchanged.
    """

    name = "sqlite"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, value in list(vars(cls).items()):
            if not attr.startswith("_") and inspect.iscoroutinefunction(value):
                setattr(cls, attr, translated(value))

    def __init__(self, path: Path | str, readers: int = 2) -> None:
        """`readers`: connections for reads, each with a thread of its own (reads take them in turn)."""
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._reader_count = max(1, readers)
        self._turn = 0
        # All writes share one connection, so they take turns: otherwise a single
        # statement could run inside another request's open transaction and be
        # rolled back with it, and a second BEGIN would fail outright.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        """The writer's connection (and the reader's, for `:memory:`)."""
        if self._db is None:
            raise StoreUnavailable("SQLite: store is not open")
        return self._db

    @property
    def reader(self) -> aiosqlite.Connection:
        """A connection for one read, the readers in turn: it sees only committed rows."""
        readers = self._readers
        if not readers:
            return self.db
        self._turn = (self._turn + 1) % len(readers)
        return readers[self._turn]

    async def _connect(self, *pragmas: str) -> aiosqlite.Connection:
        """A connection with `pragmas` applied, or none at all.

        A pragma that fails (WAL in a folder this user cannot write, a file that is
        not a database) closes the connection before the error leaves: its thread
        is not a daemon, and one left running keeps the process alive after
        `main` has returned, deaf to SIGINT and SIGTERM.
        """
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            connection.row_factory = sqlite3.Row
            for pragma in pragmas:
                await connection.execute(f"PRAGMA {pragma}")
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        return connection

    @translated
    async def open(self) -> None:
        in_memory = str(self.path) == ":memory:"
        try:
            if not in_memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(_open_once, self.path)
        except OSError as exc:
            raise store_error(exc, self.path) from exc
        try:
            self._db = await self._connect(
                "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"
            )
            await self._migrate()
            if not in_memory:  # after the migrations: a reader sees the schema they made
                for _ in range(self._reader_count):
                    self._readers.append(await self._connect("query_only=ON", "busy_timeout=5000"))
        except BaseException:
            with contextlib.suppress(Exception):
                await self.close()
            raise

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0  # always a row: 0 in a new database
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self.db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")

    @translated
    async def schema_version(self) -> int:
        row = await self._one("PRAGMA user_version")
        return int(row[0]) if row else 0

    @translated
    async def close(self) -> None:
        """Close every connection, readers and writer together; each is closed even when another fails."""
        connections, self._readers = [*self._readers, *([self._db] if self._db is not None else [])], []
        self._db = None
        errors = [exc for exc in await asyncio.gather(*(c.close() for c in connections), return_exceptions=True) if exc]
        if errors:
            raise errors[0]

    @translated
    async def ping(self) -> None:
        try:
            await self._one("SELECT 1")
        except ValueError as exc:  # aiosqlite's connection closed under us
            raise StoreUnavailable(f"SQLite: {exc}") from exc

    # helpers
    # Each helper is one trip to aiosqlite's thread (a cursor's execute, fetch and close
    # would be three): under load every trip waits for the GIL, so trips are the cost.
    # `_one` and `_all` read on a reader; inside a transaction, read on the connection it yields.
    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self.reader.execute_fetchall(sql, tuple(params))
        return next(iter(rows), None)

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self.reader.execute_fetchall(sql, tuple(params)))

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one INSERT, UPDATE or DELETE in its own transaction; return the rows it changed."""
        async with self._write_lock:
            return len(list(await self.db.execute_fetchall(sql + " RETURNING 1", tuple(params))))

    async def _write_returning(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """One `... RETURNING` statement in its own transaction; the rows it returned."""
        async with self._write_lock:
            return list(await self.db.execute_fetchall(sql, tuple(params)))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Several statements on the writer that commit together or not at all.

        Reads elsewhere see none of them before the commit. Driver errors leave
        translated (`store_error`), so callers outside the store's methods get them too.
        """
        async with self._write_lock:
            with translating(self.path):
                db = self.db
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")

    @translated
    async def explain(self, sql: str, params: Iterable[Any] = ()) -> str:
        """The query plan, for the tests that keep hot paths on indexes."""
        rows = await self._all("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(row["detail"]) for row in rows)
