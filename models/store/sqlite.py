"""The embedded default backend: one SQLite file through aiosqlite.

WAL lets readers run while a write commits; `synchronous=NORMAL` keeps every
committed transaction across a process crash (SIGKILL), which is the promise an
acknowledgement makes. The schema is versioned with `PRAGMA user_version`: each
entry of `MIGRATIONS` runs once, in order, inside a transaction. Every lookup the
API makes has an index; `EXPLAIN QUERY PLAN` checks in the tests keep it so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from models.documents import Page, Session, User
from models.store.base import DuplicateKey, Store, StoreError

MIGRATIONS: list[str] = [
    # 1: users, logins, reset tokens, blocks
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        username TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        phone TEXT,
        avatar TEXT,
        status TEXT NOT NULL DEFAULT '',
        presence_setting TEXT NOT NULL DEFAULT 'online',
        last_seen TEXT,
        role TEXT NOT NULL DEFAULT 'user',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX users_email ON users (email);
    CREATE UNIQUE INDEX users_username ON users (username COLLATE NOCASE);
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        refresh_jti TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;
    CREATE TABLE reset_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    CREATE TABLE blocks (
        blocker_id TEXT NOT NULL,
        blocked_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (blocker_id, blocked_id)
    ) WITHOUT ROWID;
    CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);
    """,
]

_USER_COLUMNS = (
    "id, email, username, password_hash, phone, avatar, status, presence_setting, last_seen, role,"
    " created_at, updated_at"
)
_USER_FIELDS = frozenset(_USER_COLUMNS.split(", ")) - {"id", "created_at"}


def _user(row: sqlite3.Row | None) -> User | None:
    return User(**dict(row)) if row is not None else None


def _session(row: sqlite3.Row | None) -> Session | None:
    return Session(**dict(row)) if row is not None else None


def _duplicate(exc: sqlite3.IntegrityError) -> DuplicateKey:
    """Name the unique field from SQLite's message (`UNIQUE constraint failed: users.email`)."""
    text = str(exc)
    column = text.rsplit(".", 1)[-1] if "UNIQUE" in text else "id"
    return DuplicateKey(column)


class SqliteStore(Store):
    """`Store` on one aiosqlite connection (one thread, writes serialised)."""

    name = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None

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
    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self.db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self.db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement in its own transaction; return the rows it changed."""
        try:
            async with self.db.execute(sql, tuple(params)) as cur:
                return cur.rowcount
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc) from exc

    async def explain(self, sql: str, params: Iterable[Any] = ()) -> str:
        """The query plan, for the tests that keep hot paths on indexes."""
        rows = await self._all("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(row["detail"]) for row in rows)

    # users
    async def insert_user(self, user: User) -> None:
        values = {name: getattr(user, name) for name in _USER_COLUMNS.split(", ")}
        await self._write(
            f"INSERT INTO users ({_USER_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values.values()
        )

    async def get_user(self, user_id: str) -> User | None:
        return _user(await self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)))

    async def get_users(self, user_ids: list[str]) -> dict[str, User]:
        if not user_ids:
            return {}
        unique = list(dict.fromkeys(user_ids))
        rows = await self._all(
            f"SELECT {_USER_COLUMNS} FROM users WHERE id IN ({', '.join('?' * len(unique))})", unique
        )
        return {row["id"]: User(**dict(row)) for row in rows}

    async def get_user_by_email(self, email: str) -> User | None:
        return _user(await self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE email = ?", (email,)))

    async def update_user(self, user_id: str, changes: dict[str, Any]) -> User | None:
        unknown = set(changes) - _USER_FIELDS
        if unknown:
            raise ValueError(f"not user fields: {sorted(unknown)}")
        if changes:
            assignments = ", ".join(f"{name} = ?" for name in changes)
            await self._write(f"UPDATE users SET {assignments} WHERE id = ?", [*changes.values(), user_id])
        return await self.get_user(user_id)

    async def delete_user(self, user_id: str) -> bool:
        return await self._write("DELETE FROM users WHERE id = ?", (user_id,)) > 0

    async def search_users(self, query: str | None, page: int, limit: int) -> Page:
        where, params = "", []
        if query:
            pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where = "WHERE username LIKE ? ESCAPE '\\' OR email LIKE ? ESCAPE '\\'"
            params = [pattern, pattern]
        total_row = await self._one(f"SELECT COUNT(*) FROM users {where}", params)
        rows = await self._all(
            f"SELECT {_USER_COLUMNS} FROM users {where} ORDER BY username COLLATE NOCASE LIMIT ? OFFSET ?",
            [*params, limit, (page - 1) * limit],
        )
        return Page([User(**dict(row)) for row in rows], int(total_row[0]) if total_row else 0, page, limit)

    async def count_users(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM users")
        return int(row[0]) if row else 0

    # sessions
    async def insert_session(self, session: Session) -> None:
        await self._write(
            "INSERT INTO sessions (id, user_id, refresh_jti, created_at, expires_at, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (session.id, session.user_id, session.refresh_jti, session.created_at, session.expires_at, None),
        )

    async def get_session(self, session_id: str) -> Session | None:
        return _session(await self._one("SELECT * FROM sessions WHERE id = ?", (session_id,)))

    async def rotate_refresh(self, session_id: str, old_jti: str, new_jti: str, expires_at: str) -> bool:
        changed = await self._write(
            "UPDATE sessions SET refresh_jti = ?, expires_at = ?"
            " WHERE id = ? AND refresh_jti = ? AND revoked_at IS NULL",
            (new_jti, expires_at, session_id, old_jti),
        )
        return changed == 1

    async def revoke_session(self, session_id: str, at: str) -> None:
        await self._write("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, session_id))

    async def revoke_user_sessions(self, user_id: str, at: str, keep: str | None = None) -> list[str]:
        rows = await self._all(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ? RETURNING id",
            (at, user_id, keep),
        )
        return [row["id"] for row in rows]

    # password reset
    async def insert_reset_token(self, token_hash: str, user_id: str, expires_at: str) -> None:
        await self._write(
            "INSERT INTO reset_tokens (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
            (token_hash, user_id, expires_at),
        )

    async def consume_reset_token(self, token_hash: str, now: str) -> str | None:
        rows = await self._all(
            "UPDATE reset_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?"
            " RETURNING user_id",
            (now, token_hash, now),
        )
        return rows[0]["user_id"] if rows else None

    # blocks
    async def set_block(self, blocker_id: str, blocked_id: str, at: str, blocked: bool) -> None:
        if blocked:
            await self._write(
                "INSERT OR IGNORE INTO blocks (blocker_id, blocked_id, created_at) VALUES (?, ?, ?)",
                (blocker_id, blocked_id, at),
            )
        else:
            await self._write("DELETE FROM blocks WHERE blocker_id = ? AND blocked_id = ?", (blocker_id, blocked_id))

    async def is_blocked(self, blocker_id: str, blocked_id: str) -> bool:
        row = await self._one("SELECT 1 FROM blocks WHERE blocker_id = ? AND blocked_id = ?", (blocker_id, blocked_id))
        return row is not None

    async def blocked_ids(self, blocker_id: str) -> list[str]:
        rows = await self._all("SELECT blocked_id FROM blocks WHERE blocker_id = ?", (blocker_id,))
        return [row["blocked_id"] for row in rows]

    async def blocked_ids_of(self, blocked_id: str, blocker_ids: list[str]) -> list[str]:
        if not blocker_ids:
            return []
        rows = await self._all(
            "SELECT blocker_id FROM blocks WHERE blocked_id = ?"
            f" AND blocker_id IN ({', '.join('?' * len(blocker_ids))})",
            [blocked_id, *blocker_ids],
        )
        return [row["blocker_id"] for row in rows]
