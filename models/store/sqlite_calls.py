"""Call history in SQLite (a table group of `SqliteStore`).

A call is one document (participants as JSON, the way a document store keeps
it); `call_members` indexes it per participant so a user's history pages by
index, newest first (call ids sort by time).
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict

import orjson

from models.documents import Call, CallParticipant
from models.store.sqlite_base import SqliteBase

_COLUMNS = (
    "id, type, initiator_id, chat_id, status, participants, created_at, updated_at, started_at, ended_at, duration"
)


def _call(row: sqlite3.Row) -> Call:
    data = dict(row)
    data["participants"] = [CallParticipant(**p) for p in orjson.loads(data["participants"])]
    return Call(**data)


class CallTables(SqliteBase):
    async def save_call(self, call: Call) -> None:
        participants = orjson.dumps([asdict(p) for p in call.participants]).decode()
        values = (
            call.id,
            call.type,
            call.initiator_id,
            call.chat_id,
            call.status,
            participants,
            call.created_at,
            call.updated_at,
            call.started_at,
            call.ended_at,
            call.duration,
        )
        async with self.transaction() as db:
            await db.execute(f"INSERT OR REPLACE INTO calls ({_COLUMNS}) VALUES ({', '.join('?' * 11)})", values)
            await db.executemany(
                "INSERT OR IGNORE INTO call_members (user_id, call_id, type) VALUES (?, ?, ?)",
                [(uid, call.id, call.type) for uid in {call.initiator_id, *(p.user_id for p in call.participants)}],
            )

    async def get_call(self, call_id: str) -> Call | None:
        row = await self._one(f"SELECT {_COLUMNS} FROM calls WHERE id = ?", (call_id,))
        return _call(row) if row else None

    async def user_calls(self, user_id: str, call_type: str | None, page: int, limit: int) -> tuple[list[Call], int]:
        where, params = "m.user_id = ?", [user_id]
        if call_type is not None:
            where += " AND m.type = ?"
            params.append(call_type)
        total = await self._one(f"SELECT COUNT(*) FROM call_members m WHERE {where}", params)
        columns = ", ".join(f"c.{name}" for name in _COLUMNS.split(", "))
        rows = await self._all(
            f"SELECT {columns} FROM call_members m JOIN calls c ON c.id = m.call_id WHERE {where}"
            " ORDER BY m.call_id DESC LIMIT ? OFFSET ?",
            [*params, limit, (page - 1) * limit],
        )
        return [_call(row) for row in rows], int(total[0]) if total else 0
