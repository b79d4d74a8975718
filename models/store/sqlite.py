"""The SQLite store: users, logins, reset tokens and blocks here; chats and calls in their table groups."""

from __future__ import annotations

import sqlite3
from typing import Any

from models.documents import Page, Session, User
from models.store.fields import USER_FIELDS, check_changes
from models.store.sqlite_base import like_pattern
from models.store.sqlite_calls import CallTables
from models.store.sqlite_chats import ChatTables

_USER_COLUMNS = (
    "id, email, username, password_hash, phone, avatar, status, presence_setting, last_seen, role,"
    " created_at, updated_at, display_name"
)


def _user(row: sqlite3.Row | None) -> User | None:
    return User(**dict(row)) if row is not None else None


def _session(row: sqlite3.Row | None) -> Session | None:
    return Session(**dict(row)) if row is not None else None


class SqliteStore(ChatTables, CallTables):
    """`Store` on aiosqlite: one connection for writes (serialised), others for reads (see `sqlite_base`)."""

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
        check_changes(changes, USER_FIELDS)  # the names go into the SQL text
        if changes:
            assignments = ", ".join(f"{name} = ?" for name in changes)
            await self._write(f"UPDATE users SET {assignments} WHERE id = ?", [*changes.values(), user_id])
        return await self.get_user(user_id)

    async def delete_user(self, user_id: str) -> bool:
        return await self._write("DELETE FROM users WHERE id = ?", (user_id,)) > 0

    async def search_users(self, query: str | None, page: int, limit: int, emails: bool = True) -> Page:
        where, params = "", []
        if query:
            pattern = like_pattern(query)
            columns = ["username", "display_name", *(["email"] if emails else [])]
            where = "WHERE " + " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for column in columns)
            params = [pattern] * len(columns)
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
        rows = await self._write_returning(
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
        rows = await self._write_returning(
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
