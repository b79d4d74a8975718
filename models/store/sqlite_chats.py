"""Chats, members, messages and uploads in SQLite (a table group of `SqliteStore`)."""

from __future__ import annotations

import functools
import sqlite3
import string
from typing import Any

import orjson

from models.documents import Chat, Member, Message, Upload
from models.store.base import check_chat_order, check_history_order
from models.store.fields import CHAT_FIELDS, MEMBER_FIELDS, MESSAGE_FIELDS, check_changes
from models.store.group_commit import GroupCommit
from models.store.sqlite_base import like_pattern, placeholders
from models.store.sqlite_search import SearchIndex

_CHAT_FIELDS = tuple(Chat.__slots__)
_MEMBER_FIELDS = tuple(Member.__slots__)
_CHAT_SELECT = ", ".join(f"c.{name}" for name in _CHAT_FIELDS)
_MEMBER_SELECT = ", ".join(f"m.{name}" for name in _MEMBER_FIELDS)
# each order's keys, latest first; the chat id last, so that reversing them reverses the whole order
_CHAT_ORDERS = {
    "last_activity": ("c.last_activity", "COALESCE(c.last_message_id, c.id)", "c.id"),
    "created_at": ("c.created_at", "c.id"),
}


def _chat(row: sqlite3.Row | dict[str, Any]) -> Chat:
    chat = Chat(**dict(row))
    chat.only_admins_add = bool(chat.only_admins_add)
    return chat


def _member(row: sqlite3.Row | dict[str, Any]) -> Member:
    member = Member(**dict(row))
    member.muted, member.archived = bool(member.muted), bool(member.archived)
    return member


_MESSAGE_COLUMNS = (
    "id, chat_id, sender_id, content, type, metadata, reply_to, client_id, edited_at, deleted, created_at, updated_at"
)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def search_phrase(text: str) -> str | None:
    """The FTS5 query that finds `text` in the search index, or None when the index cannot answer.

    The index holds trigrams of `lower(content)`: the text is lowered the same way
    (ASCII only, as `LIKE` folds case) and quoted as one phrase, so its characters
    are never query syntax. Fewer than three characters make no trigram, and the
    query parser stops at a NUL; those searches read the chat with `LIKE` instead.
    """
    if len(text) < 3 or "\x00" in text:
        return None
    return '"' + text.translate(_ASCII_LOWER).replace('"', '""') + '"'


def _search_where(phrase: str, chat_id: str, before: str | None, after: str | None) -> tuple[str, list[Any]]:
    """`FROM ... WHERE` of the matching keys of one chat; the index is read first (`CROSS JOIN` keeps it so)."""
    sql = (
        "message_search CROSS JOIN message_search_keys k ON k.key = message_search.rowid"
        " WHERE message_search MATCH ? AND k.chat_id = ?"
    )
    params: list[Any] = [phrase, chat_id]
    if before is not None:
        sql += " AND k.message_id < ?"
        params.append(before)
    if after is not None:
        sql += " AND k.message_id > ?"
        params.append(after)
    return sql, params


def _message(row: sqlite3.Row) -> Message:
    """A row of `_MESSAGE_COLUMNS`, read by position: a history page makes fifty of these."""
    return Message(
        id=row[0],
        chat_id=row[1],
        sender_id=row[2],
        content=row[3],
        type=row[4],
        metadata=orjson.loads(row[5]) if row[5] else None,
        reply_to=row[6],
        client_id=row[7],
        edited_at=row[8],
        deleted=bool(row[9]),
        created_at=row[10],
        updated_at=row[11],
    )


def _message_row(message: Message) -> tuple[Any, ...]:
    """A message's values in `_MESSAGE_COLUMNS` order."""
    return (
        message.id,
        message.chat_id,
        message.sender_id,
        message.content,
        message.type,
        orjson.dumps(message.metadata).decode() if message.metadata is not None else None,
        message.reply_to,
        message.client_id,
        message.edited_at,
        int(message.deleted),
        message.created_at,
        message.updated_at,
    )


# a message goes in only if its sender is a member and, in a private chat, not blocked by the other member
_CHECKED_INSERT = (
    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) SELECT {', '.join('?' * 12)}"
    " WHERE EXISTS (SELECT 1 FROM members WHERE chat_id = ? AND user_id = ?)"
    " AND NOT EXISTS (SELECT 1 FROM chats c JOIN members o ON o.chat_id = c.id AND o.user_id != ?"
    " JOIN blocks b ON b.blocker_id = o.user_id AND b.blocked_id = ?"
    " WHERE c.id = ? AND c.type = 'private')"
)


def _checked_params(message: Message) -> tuple[Any, ...]:
    sender, chat = message.sender_id, message.chat_id
    return (*_message_row(message), chat, sender, sender, sender, chat)


class ChatTables(SearchIndex):
    # chats and members
    async def insert_chat(self, chat: Chat, members: list[Member]) -> None:
        columns = list(Chat.__slots__)
        async with self.transaction() as db:
            await db.execute(
                f"INSERT INTO chats ({', '.join(columns)}) VALUES ({placeholders(columns)})",
                [getattr(chat, c) for c in columns],
            )
            await self._insert_members(members)

    async def _insert_members(self, members: list[Member]) -> None:
        columns = list(Member.__slots__)
        await self.db.executemany(
            f"INSERT OR IGNORE INTO members ({', '.join(columns)}) VALUES ({placeholders(columns)})",
            [[getattr(m, c) for c in columns] for m in members],
        )

    async def get_chat(self, chat_id: str) -> Chat | None:
        row = await self._one("SELECT * FROM chats WHERE id = ?", (chat_id,))
        return _chat(row) if row else None

    async def get_private_chat(self, pair_key: str) -> Chat | None:
        row = await self._one("SELECT * FROM chats WHERE pair_key = ?", (pair_key,))
        return _chat(row) if row else None

    async def update_chat(self, chat_id: str, changes: dict[str, Any]) -> Chat | None:
        check_changes(changes, CHAT_FIELDS)  # the names go into the SQL text
        if changes:
            assignments = ", ".join(f"{name} = ?" for name in changes)
            await self._write(f"UPDATE chats SET {assignments} WHERE id = ?", [*changes.values(), chat_id])
        return await self.get_chat(chat_id)

    async def delete_chat(self, chat_id: str) -> None:
        async with self.transaction() as db:
            await db.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
            await db.execute("DELETE FROM chats WHERE id = ?", (chat_id,))

    async def get_member(self, chat_id: str, user_id: str) -> Member | None:
        row = await self._one("SELECT * FROM members WHERE chat_id = ? AND user_id = ?", (chat_id, user_id))
        return _member(row) if row else None

    async def list_members(self, chat_id: str) -> list[Member]:
        rows = await self._all("SELECT * FROM members WHERE chat_id = ? ORDER BY joined_at, user_id", (chat_id,))
        return [_member(row) for row in rows]

    async def add_members(self, members: list[Member]) -> None:
        """A member of a chat that does not exist fails the foreign key: `ConstraintViolation`, nothing added."""
        async with self.transaction():
            await self._insert_members(members)

    async def remove_member(self, chat_id: str, user_id: str) -> bool:
        return await self._write("DELETE FROM members WHERE chat_id = ? AND user_id = ?", (chat_id, user_id)) > 0

    async def update_member(self, chat_id: str, user_id: str, changes: dict[str, Any]) -> Member | None:
        check_changes(changes, MEMBER_FIELDS)
        if changes:
            assignments = ", ".join(f"{name} = ?" for name in changes)
            await self._write(
                f"UPDATE members SET {assignments} WHERE chat_id = ? AND user_id = ?",
                [*changes.values(), chat_id, user_id],
            )
        return await self.get_member(chat_id, user_id)

    async def advance_mark(self, chat_id: str, user_id: str, mark: str, message_id: str) -> bool:
        if mark not in ("last_read_id", "last_delivered_id"):
            raise ValueError(mark)
        changed = await self._write(
            f"UPDATE members SET {mark} = ? WHERE chat_id = ? AND user_id = ? AND ({mark} IS NULL OR {mark} < ?)",
            (message_id, chat_id, user_id, message_id),
        )
        return changed > 0

    async def advance_delivered(self, chat_id: str, user_id: str, message_id: str, sender_id: str) -> tuple[bool, bool]:
        rows = await self._write_returning(
            "UPDATE members SET last_delivered_id = ? WHERE chat_id = ? AND user_id = ?"
            " AND (last_delivered_id IS NULL OR last_delivered_id < ?)"
            " RETURNING (SELECT COUNT(*) FROM members o WHERE o.chat_id = ? AND o.user_id NOT IN (?, ?)"
            " AND o.last_delivered_id >= ?)",
            (message_id, chat_id, user_id, message_id, chat_id, user_id, sender_id, message_id),
        )
        return (True, rows[0][0] == 0) if rows else (False, False)

    async def user_chats(
        self,
        user_id: str,
        archived: bool | None,
        chat_type: str | None,
        page: int,
        limit: int,
        order_by: str = "last_activity",
        descending: bool = True,
    ) -> tuple[list[tuple[Chat, Member]], int]:
        check_chat_order(order_by)
        direction = "DESC" if descending else "ASC"
        order = ", ".join(f"{key} {direction}" for key in _CHAT_ORDERS[order_by])
        where = ["m.user_id = ?"]
        params: list[str | int] = [user_id]
        if archived is not None:
            where.append("m.archived = ?")
            params.append(int(archived))
        if chat_type is not None:
            where.append("c.type = ?")
            params.append(chat_type)
        clause = " AND ".join(where)
        total = await self._one(
            f"SELECT COUNT(*) FROM members m JOIN chats c ON c.id = m.chat_id WHERE {clause}", params
        )
        rows = await self._all(
            f"SELECT {_CHAT_SELECT}, {_MEMBER_SELECT} FROM members m JOIN chats c ON c.id = m.chat_id WHERE {clause}"
            f" ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, limit, (page - 1) * limit],
        )
        width = len(_CHAT_FIELDS)
        out = []
        for row in rows:
            values = tuple(row)
            chat = _chat(dict(zip(_CHAT_FIELDS, values[:width], strict=True)))
            member = _member(dict(zip(_MEMBER_FIELDS, values[width:], strict=True)))
            out.append((chat, member))
        return out, int(total[0]) if total else 0

    async def members_and_unread(
        self, chat_ids: list[str], reader_id: str | None = None, read_marks: dict[str, str | None] | None = None
    ) -> tuple[dict[str, list[Member]], dict[str, int]]:
        """Two statements for the whole page: the members on `members`' primary key, the counts on `messages_chat`."""
        ids = list(dict.fromkeys(chat_ids))
        members: dict[str, list[Member]] = {chat_id: [] for chat_id in ids}
        if ids:
            rows = await self._all(
                f"SELECT * FROM members WHERE chat_id IN ({placeholders(ids)}) ORDER BY chat_id, joined_at, user_id",
                ids,
            )
            for row in rows:
                members[row["chat_id"]].append(_member(row))
        if reader_id is None or not read_marks:
            return members, {}
        marks = [value for chat_id, mark in read_marks.items() for value in (chat_id, mark or "")]
        rows = await self._all(
            f"WITH marks (chat_id, after_id) AS (VALUES {', '.join(['(?, ?)'] * len(read_marks))})"
            " SELECT marks.chat_id, (SELECT COUNT(*) FROM messages m WHERE m.chat_id = marks.chat_id"
            " AND m.id > marks.after_id AND m.sender_id != ? AND m.deleted = 0) FROM marks",
            [*marks, reader_id],
        )
        return members, {row[0]: int(row[1]) for row in rows}

    async def user_chat_ids(self, user_id: str) -> list[str]:
        rows = await self._all("SELECT chat_id FROM members WHERE user_id = ?", (user_id,))
        return [row["chat_id"] for row in rows]

    async def shared_chat_user_ids(self, user_id: str) -> list[str]:
        rows = await self._all(
            "SELECT DISTINCT o.user_id FROM members m JOIN members o ON o.chat_id = m.chat_id"
            " WHERE m.user_id = ? AND o.user_id != ?",
            (user_id, user_id),
        )
        return [row["user_id"] for row in rows]

    # messages
    async def insert_message(self, message: Message) -> None:
        await self._write(
            f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 12)})", _message_row(message)
        )

    @functools.cached_property
    def _sends(self) -> GroupCommit[Message]:
        return GroupCommit(self._insert_checked, self._insert_checked_many)

    async def close(self) -> None:
        if "_sends" in vars(self):  # senders waiting on the batch in flight get their answer first
            await self._sends.close()
        await super().close()

    async def insert_message_if_allowed(self, message: Message) -> bool:
        """Checked and inserted with the other messages arriving meanwhile (`GroupCommit`)."""
        return await self._sends.submit(message)

    async def _insert_checked(self, message: Message) -> bool:
        """The membership and block checks and the insert as one statement: one trip, one commit."""
        return await self._write(_CHECKED_INSERT, _checked_params(message)) > 0

    async def _insert_checked_many(self, messages: list[Message]) -> list[bool]:
        """Several checked inserts in one transaction; a repeated `clientId` is skipped, not an error."""
        ids = [m.id for m in messages]
        async with self.transaction() as db:
            await db.executemany(
                _CHECKED_INSERT.replace("INSERT", "INSERT OR IGNORE", 1), map(_checked_params, messages)
            )
            stored = {
                row[0]
                for row in await db.execute_fetchall(f"SELECT id FROM messages WHERE id IN ({placeholders(ids)})", ids)
            }
        return [m.id in stored for m in messages]

    async def get_message(self, message_id: str) -> Message | None:
        row = await self._one(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        return _message(row) if row else None

    async def get_messages(self, message_ids: list[str]) -> dict[str, Message]:
        ids = list(dict.fromkeys(i for i in message_ids if i))
        if not ids:
            return {}
        rows = await self._all(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({placeholders(ids)})", ids)
        return {row["id"]: _message(row) for row in rows}

    async def get_message_by_client_id(self, sender_id: str, client_id: str) -> Message | None:
        row = await self._one(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender_id = ? AND client_id = ?", (sender_id, client_id)
        )
        return _message(row) if row else None

    async def update_message(self, message_id: str, changes: dict[str, Any]) -> Message | None:
        check_changes(changes, MESSAGE_FIELDS)
        if changes:
            values = {
                k: (orjson.dumps(v).decode() if k == "metadata" and v is not None else v) for k, v in changes.items()
            }
            assignments = ", ".join(f"{name} = ?" for name in values)
            await self._write(f"UPDATE messages SET {assignments} WHERE id = ?", [*values.values(), message_id])
        return await self.get_message(message_id)

    async def tombstone_message(self, message_id: str, at: str) -> bool:
        empty = "content = '', metadata = NULL, deleted = 1, updated_at = ?"
        return await self._write(f"UPDATE messages SET {empty} WHERE id = ? AND deleted = 0", [at, message_id]) == 1

    async def edit_message(self, message_id: str, changes: dict[str, Any]) -> bool:
        check_changes(changes, MESSAGE_FIELDS)
        values = {k: (orjson.dumps(v).decode() if k == "metadata" and v is not None else v) for k, v in changes.items()}
        assignments = ", ".join(f"{name} = ?" for name in values)
        condition = "id = ? AND deleted = 0 AND (edited_at IS NULL OR edited_at <= ?)"
        params = [*values.values(), message_id, changes["edited_at"]]
        return await self._write(f"UPDATE messages SET {assignments} WHERE {condition}", params) == 1

    async def list_messages(
        self,
        chat_id: str,
        *,
        limit: int,
        offset: int = 0,
        before: str | None = None,
        after: str | None = None,
        search: str | None = None,
        live_only: bool = False,
        oldest_first: bool = False,
    ) -> list[Message]:
        """One range of `messages_chat`; with a search, the page of matching ids from the search index first."""
        check_history_order(oldest_first, before, after)
        phrase = search_phrase(search) if search else None
        # right after a cursor: the oldest `limit` are read, then turned newest first
        turned = after is not None and before is None
        order = "ASC" if turned or oldest_first else "DESC"
        if phrase is not None:
            await self.catch_up_search()
            where, params = _search_where(phrase, chat_id, before, after)
            sql = (
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT k.message_id FROM {where}"
                f" ORDER BY k.message_id {order} LIMIT ? OFFSET ?) ORDER BY id {order}"
            )
        else:
            conditions, params = ["chat_id = ?"], [chat_id]
            if before is not None:
                conditions.append("id < ?")
                params.append(before)
            if after is not None:
                conditions.append("id > ?")
                params.append(after)
            if search:  # too short for the trigram index: every message of the chat is read
                conditions.append("deleted = 0 AND content LIKE ? ESCAPE '\\'")
                params.append(like_pattern(search))
            elif live_only:  # a search excludes tombstones already
                conditions.append("deleted = 0")
            sql = (
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(conditions)}"
                f" ORDER BY id {order} LIMIT ? OFFSET ?"
            )
        rows = await self.reader.execute_fetchall(sql, [*params, limit, offset])
        messages = [_message(row) for row in rows]
        return messages[::-1] if turned else messages

    async def count_messages(self, chat_id: str, search: str | None = None, live_only: bool = False) -> int:
        """The chat's own count (tombstones included); live, its messages counted; with a search, the matches."""
        phrase = search_phrase(search) if search else None
        if not search and live_only:  # one range of `messages_chat`: the chat's messages are read
            sql, params = "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND deleted = 0", [chat_id]
        elif not search:
            sql, params = "SELECT message_count FROM chats WHERE id = ?", [chat_id]
        elif phrase is not None:
            await self.catch_up_search()
            where, params = _search_where(phrase, chat_id, None, None)
            sql = f"SELECT COUNT(*) FROM {where}"
        else:
            sql = "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND deleted = 0 AND content LIKE ? ESCAPE '\\'"
            params = [chat_id, like_pattern(search)]
        row = next(iter(await self.reader.execute_fetchall(sql, params)), None)
        return int(row[0]) if row is not None else 0

    async def count_unread(self, chat_id: str, user_id: str, after_id: str | None) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND id > ? AND sender_id != ? AND deleted = 0",
            (chat_id, after_id or "", user_id),
        )
        return int(row[0]) if row else 0

    async def messages_after(self, chat_ids: list[str], after_id: str, limit: int) -> list[Message]:
        if not chat_ids:
            return []
        rows = await self._all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id IN ({placeholders(chat_ids)}) AND id > ?"
            " ORDER BY id LIMIT ?",
            [*chat_ids, after_id, limit],
        )
        return [_message(row) for row in rows]

    async def messages_changed_since(
        self, chat_ids: list[str], since: str, before_id: str, limit: int
    ) -> list[Message]:
        if not chat_ids:
            return []
        rows = await self._all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id IN ({placeholders(chat_ids)})"
            " AND updated_at > ? AND id <= ? ORDER BY updated_at LIMIT ?",
            [*chat_ids, since, before_id, limit],
        )
        return [_message(row) for row in rows]

    # uploads
    async def insert_upload(self, upload: Upload) -> None:
        columns = list(Upload.__slots__)
        await self._write(
            f"INSERT INTO uploads ({', '.join(columns)}) VALUES ({placeholders(columns)})",
            [getattr(upload, c) for c in columns],
        )

    async def get_upload(self, upload_id: str) -> Upload | None:
        row = await self._one("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return Upload(**dict(row)) if row else None
