"""Chats, members, messages and uploads in MongoDB (a collection group of `MongoStore`).

A chat and each of its members are documents of their own (`members._id` is
`"<chat_id>:<user_id>"`, so a member is one point lookup and a second insert of
the same member is a duplicate `_id`, ignored). Two internal fields keep the chat
list on an index: `last_key` is the newest message id, or the chat's own id before
the first message (SQLite's `COALESCE(last_message_id, id)`), and
`last_message_id` is kept as `""` rather than null before the first message, so
that `$max` can move it forward on MongoDB and FerretDB alike.

A message's `metadata` is the client's own JSON object; it is kept as its JSON
text, as SQLite keeps it, so a key a user chose (`$where`, `a.b`) never becomes a
BSON field name, let alone part of an update or a query.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from models.documents import Chat, Member, Message, Upload
from models.store.base import ConstraintViolation, check_chat_order, check_history_order
from models.store.fields import CHAT_FIELDS, MEMBER_FIELDS, MESSAGE_FIELDS
from models.store.mongo_base import (
    MongoBase,
    checked_changes,
    client_key,
    contains,
    count,
    duplicate_key,
    from_doc,
    named,
    page_of,
    text,
    texts,
    to_doc,
)

_CHAT_FLAGS = frozenset({"only_admins_add"})
_MEMBER_FLAGS = frozenset({"muted", "archived"})
_MESSAGE_FLAGS = frozenset({"deleted"})
_MARKS = ("last_read_id", "last_delivered_id")
# each order's keys, latest first; the chat id last, so that reversing them reverses the whole order
_CHAT_ORDERS = {"last_activity": ("last_activity", "last_key", "_id"), "created_at": ("created_at", "_id")}
_DUPLICATE = 11000


def _member_key(chat_id: Any, user_id: Any) -> str:
    return f"{text(chat_id)}:{text(user_id)}"


def _chat_doc(chat: Chat) -> dict[str, Any]:
    doc = to_doc(chat)
    text(doc["_id"])
    doc["only_admins_add"] = bool(chat.only_admins_add)
    doc["last_message_id"] = chat.last_message_id or ""
    doc["last_key"] = chat.last_message_id or chat.id
    if doc["pair_key"] is None:  # absent, not null: the sparse unique index holds only private chats
        del doc["pair_key"]
    return doc


def _chat(doc: dict[str, Any]) -> Chat:
    chat = from_doc(Chat, doc)
    chat.last_message_id = chat.last_message_id or None
    return chat


def _member_doc(member: Member) -> dict[str, Any]:
    doc = to_doc(member, key=_member_key(member.chat_id, member.user_id))
    doc["muted"], doc["archived"] = bool(member.muted), bool(member.archived)
    return doc


def _member(doc: dict[str, Any] | None) -> Member | None:
    return from_doc(Member, doc) if doc is not None else None


def _encoded(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected an object, got {type(metadata).__name__}")
    return orjson.dumps(metadata).decode()


def _message_doc(message: Message) -> dict[str, Any]:
    doc = to_doc(message)
    for name in ("_id", "chat_id", "sender_id"):
        text(doc[name])
    if message.client_id is not None:
        doc["client_key"] = client_key(message.sender_id, text(message.client_id))
    doc["metadata"] = _encoded(message.metadata)
    doc["deleted"] = bool(message.deleted)
    return doc


def _message(doc: dict[str, Any]) -> Message:
    stored: str | None = doc.get("metadata")  # kept as JSON text
    message = from_doc(Message, doc)
    message.metadata = orjson.loads(stored) if stored else None
    return message


class ChatCollections(MongoBase):
    # chats and members
    async def insert_chat(self, chat: Chat, members: list[Member]) -> None:
        """The chat first (a second private chat of a pair fails here), then its members.

        Without a multi-document transaction (which needs a replica set and which
        FerretDB lacks) a failure between the two is undone by hand: a chat
        nobody is a member of is listed to nobody, and is removed here.
        """
        doc = _chat_doc(chat)
        try:
            await self.chats.insert_one(doc)
        except DuplicateKeyError as exc:
            raise await named(
                duplicate_key(exc), self.chats, chat.id, {"pair_key": ("pair_key", chat.pair_key)}
            ) from None
        try:
            await self._insert_members(members)
        except BaseException:
            with contextlib.suppress(PyMongoError):
                await self.members.delete_many({"chat_id": chat.id})
                await self.chats.delete_one({"_id": chat.id})
            raise

    async def _insert_members(self, members: list[Member]) -> None:
        docs = [_member_doc(m) for m in members]
        if not docs:
            return
        try:
            await self.members.insert_many(docs, ordered=False)
        except BulkWriteError as exc:  # members already there stay as they are; anything else is an error
            details = exc.details or {}
            if details.get("writeConcernErrors") or any(
                error.get("code") != _DUPLICATE for error in details.get("writeErrors", [])
            ):
                raise

    async def get_chat(self, chat_id: str) -> Chat | None:
        doc = await self.chats.find_one({"_id": text(chat_id)})
        return _chat(doc) if doc is not None else None

    async def get_private_chat(self, pair_key: str) -> Chat | None:
        doc = await self.chats.find_one({"pair_key": text(pair_key)})
        return _chat(doc) if doc is not None else None

    async def update_chat(self, chat_id: str, changes: dict[str, Any]) -> Chat | None:
        values = checked_changes(changes, CHAT_FIELDS, _CHAT_FLAGS)
        if "last_message_id" in values:
            last = values["last_message_id"]
            values["last_message_id"], values["last_key"] = last or "", last or text(chat_id)
        if values:
            await self.chats.update_one({"_id": text(chat_id)}, {"$set": values})
        return await self.get_chat(chat_id)

    async def delete_chat(self, chat_id: str) -> None:
        """Members first: from then on nobody reaches the chat, so a failure part-way leaves nothing visible."""
        chat_id = text(chat_id)
        await self.members.delete_many({"chat_id": chat_id})
        await self.messages.delete_many({"chat_id": chat_id})
        await self.chats.delete_one({"_id": chat_id})

    async def get_member(self, chat_id: str, user_id: str) -> Member | None:
        return _member(await self.members.find_one({"_id": _member_key(chat_id, user_id)}))

    async def list_members(self, chat_id: str) -> list[Member]:
        cursor = self.members.find({"chat_id": text(chat_id)}).sort([("joined_at", ASCENDING), ("user_id", ASCENDING)])
        return [from_doc(Member, doc) for doc in await cursor.to_list(None)]

    async def add_members(self, members: list[Member]) -> None:
        """A member of a chat that does not exist is refused as SQLite's foreign key refuses it.

        MongoDB has no foreign keys, so the chats are looked up first: a chat
        deleted between the look-up and the insert can still be left with members,
        whom nobody lists (its members are deleted first; see `delete_chat`).
        """
        chat_ids = texts(m.chat_id for m in members)
        if chat_ids and await self.chats.count_documents({"_id": {"$in": chat_ids}}) < len(chat_ids):
            raise ConstraintViolation("MongoDB: a member of a chat that does not exist")
        await self._insert_members(members)

    async def remove_member(self, chat_id: str, user_id: str) -> bool:
        return (await self.members.delete_one({"_id": _member_key(chat_id, user_id)})).deleted_count > 0

    async def update_member(self, chat_id: str, user_id: str, changes: dict[str, Any]) -> Member | None:
        values = checked_changes(changes, MEMBER_FIELDS, _MEMBER_FLAGS)
        if values:
            await self.members.update_one({"_id": _member_key(chat_id, user_id)}, {"$set": values})
        return await self.get_member(chat_id, user_id)

    async def advance_mark(self, chat_id: str, user_id: str, mark: str, message_id: str) -> bool:
        if mark not in _MARKS:
            raise ValueError(mark)
        message_id = text(message_id)
        result = await self.members.update_one(
            {"_id": _member_key(chat_id, user_id), "$or": [{mark: None}, {mark: {"$lt": message_id}}]},
            {"$set": {mark: message_id}},
        )
        return result.modified_count > 0

    async def advance_delivered(self, chat_id: str, user_id: str, message_id: str, sender_id: str) -> tuple[bool, bool]:
        """Two operations here: the others are counted first (see `Store.advance_delivered`)."""
        message_id = text(message_id)
        earlier = await self.members.find_one(
            {
                "chat_id": text(chat_id),
                "user_id": {"$nin": [text(user_id), text(sender_id)]},
                "last_delivered_id": {"$gte": message_id},
            },
            {"_id": 1},
        )
        moved = await self.advance_mark(chat_id, user_id, "last_delivered_id", message_id)
        return moved, moved and earlier is None

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
        """The user's memberships (one index range), then their chats in the order asked for."""
        check_chat_order(order_by)
        direction = DESCENDING if descending else ASCENDING
        order = [(key, direction) for key in _CHAT_ORDERS[order_by]]
        where: dict[str, Any] = {"user_id": text(user_id)}
        if archived is not None:
            where["archived"] = bool(archived)
        memberships = {doc["chat_id"]: doc for doc in await self.members.find(where).to_list(None)}
        if not memberships:
            return [], 0
        chats: dict[str, Any] = {"_id": {"$in": list(memberships)}}
        if chat_type is not None:
            chats["type"] = text(chat_type)
        total = await self.chats.count_documents(chats)
        cursor = self.chats.find(chats).sort(order)
        docs = await page_of(cursor, max(count(page) - 1, 0) * count(limit), count(limit))
        return [(_chat(doc), from_doc(Member, memberships[doc["_id"]])) for doc in docs], total

    async def members_and_unread(
        self, chat_ids: list[str], reader_id: str | None = None, read_marks: dict[str, str | None] | None = None
    ) -> tuple[dict[str, list[Member]], dict[str, int]]:
        """Two queries for the whole page: the members on `chat_joined`, the counts by chat on `chat_history`."""
        ids = texts(chat_ids)
        members: dict[str, list[Member]] = {chat_id: [] for chat_id in ids}
        if ids:
            cursor = self.members.find({"chat_id": {"$in": ids}}).sort(
                [("chat_id", ASCENDING), ("joined_at", ASCENDING), ("user_id", ASCENDING)]
            )
            for doc in await cursor.to_list(None):
                members[doc["chat_id"]].append(from_doc(Member, doc))
        if reader_id is None or not read_marks:
            return members, {}
        marks = {text(chat_id): text(mark) if mark is not None else "" for chat_id, mark in read_marks.items()}
        where = {
            "chat_id": {"$in": list(marks)},
            "$or": [{"chat_id": chat_id, "_id": {"$gt": mark}} for chat_id, mark in marks.items()],
            "sender_id": {"$ne": text(reader_id)},
            "deleted": False,
        }
        grouped = await self.messages.aggregate([{"$match": where}, {"$group": {"_id": "$chat_id", "n": {"$sum": 1}}}])
        counts = {doc["_id"]: int(doc["n"]) for doc in await grouped.to_list(None)}
        return members, {chat_id: counts.get(chat_id, 0) for chat_id in marks}

    async def user_chat_ids(self, user_id: str) -> list[str]:
        docs = await self.members.find({"user_id": text(user_id)}, {"chat_id": 1}).to_list(None)
        return [doc["chat_id"] for doc in docs]

    async def shared_chat_user_ids(self, user_id: str) -> list[str]:
        chat_ids = await self.user_chat_ids(user_id)
        if not chat_ids:
            return []
        return list(await self.members.distinct("user_id", {"chat_id": {"$in": chat_ids}, "user_id": {"$ne": user_id}}))

    # messages
    async def insert_message(self, message: Message) -> None:
        """The message, then the chat's summary of it.

        There is no trigger and, without a replica-set transaction, no single
        write for both, so the message goes first: it is the fact; the chat's
        `last_message_id`, `last_key` and `last_activity` are then moved with
        `$max`, which only ever moves them forward, so two senders whose chat
        updates land out of order still leave the newest message as the last one
        (ids sort by time), and `$inc` counts each inserted message once. A
        duplicate `client_id` fails the insert, so the chat is never touched for it.
        """
        doc = _message_doc(message)
        try:
            await self.messages.insert_one(doc)
        except DuplicateKeyError as exc:
            keys = {"client_id": ("client_key", doc.get("client_key"))}
            raise await named(duplicate_key(exc), self.messages, message.id, keys) from None
        await self.chats.update_one(
            {"_id": message.chat_id},
            {
                "$max": {
                    "last_message_id": message.id,
                    "last_key": message.id,
                    "last_activity": text(message.created_at),
                },
                "$inc": {"message_count": 1},
            },
        )

    async def get_message(self, message_id: str) -> Message | None:
        doc = await self.messages.find_one({"_id": text(message_id)})
        return _message(doc) if doc is not None else None

    async def get_messages(self, message_ids: list[str]) -> dict[str, Message]:
        ids = texts(i for i in message_ids if i)
        if not ids:
            return {}
        docs = await self.messages.find({"_id": {"$in": ids}}).to_list(None)
        return {doc["_id"]: _message(doc) for doc in docs}

    async def get_message_by_client_id(self, sender_id: str, client_id: str) -> Message | None:
        doc = await self.messages.find_one({"client_key": client_key(text(sender_id), text(client_id))})
        return _message(doc) if doc is not None else None

    async def update_message(self, message_id: str, changes: dict[str, Any]) -> Message | None:
        values = checked_changes(changes, MESSAGE_FIELDS, _MESSAGE_FLAGS)
        if "metadata" in values:
            values["metadata"] = _encoded(changes["metadata"])
        if values:
            await self.messages.update_one({"_id": text(message_id)}, {"$set": values})
        return await self.get_message(message_id)

    async def tombstone_message(self, message_id: str, at: str) -> bool:
        live = {"_id": text(message_id), "deleted": {"$ne": True}}
        empty = {"content": "", "metadata": None, "deleted": True, "updated_at": text(at)}
        return bool((await self.messages.update_one(live, {"$set": empty})).matched_count)

    async def edit_message(self, message_id: str, changes: dict[str, Any]) -> bool:
        values = checked_changes(changes, MESSAGE_FIELDS, _MESSAGE_FLAGS)
        if "metadata" in values:
            values["metadata"] = _encoded(changes["metadata"])
        edited_at = text(changes["edited_at"])
        live = {"_id": text(message_id), "deleted": {"$ne": True}}
        newest = {"$or": [{"edited_at": None}, {"edited_at": {"$lte": edited_at}}]}
        result = await self.messages.update_one({**live, **newest}, {"$set": values})
        return bool(result.matched_count)

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
        """One range of the `(chat_id, _id)` index from the cursor id: nothing before the page is read."""
        check_history_order(oldest_first, before, after)
        where: dict[str, Any] = {"chat_id": text(chat_id)}
        ids: dict[str, str] = {}
        if before is not None:
            ids["$lt"] = text(before)
        if after is not None:
            ids["$gt"] = text(after)
        if ids:
            where["_id"] = ids
        if search is not None and text(search):
            where["deleted"] = False
            where["content"] = contains(search)
        elif live_only:
            where["deleted"] = False
        # right after a cursor: the oldest `limit` are read, then turned newest first
        turned = after is not None and before is None
        cursor = self.messages.find(where).sort("_id", ASCENDING if turned or oldest_first else DESCENDING)
        messages = [_message(doc) for doc in await page_of(cursor, count(offset), count(limit))]
        return messages[::-1] if turned else messages

    async def count_messages(self, chat_id: str, search: str | None = None, live_only: bool = False) -> int:
        """The chat's own count (tombstones included); live, its messages counted; with a search, the matches."""
        if search is None or not text(search):
            if live_only:  # one range of `chat_history`: the chat's messages are read
                return await self.messages.count_documents({"chat_id": text(chat_id), "deleted": False})
            doc = await self.chats.find_one({"_id": text(chat_id)}, {"message_count": 1})
            return int(doc["message_count"]) if doc is not None else 0
        return await self.messages.count_documents(
            {"chat_id": text(chat_id), "deleted": False, "content": contains(search)}
        )

    async def count_unread(self, chat_id: str, user_id: str, after_id: str | None) -> int:
        return await self.messages.count_documents(
            {
                "chat_id": text(chat_id),
                "_id": {"$gt": text(after_id) if after_id is not None else ""},
                "sender_id": {"$ne": text(user_id)},
                "deleted": False,
            }
        )

    async def messages_after(self, chat_ids: list[str], after_id: str, limit: int) -> list[Message]:
        ids = texts(chat_ids)
        if not ids:
            return []
        cursor = self.messages.find({"chat_id": {"$in": ids}, "_id": {"$gt": text(after_id)}}).sort("_id", ASCENDING)
        return [_message(doc) for doc in await page_of(cursor, 0, count(limit))]

    async def messages_changed_since(
        self, chat_ids: list[str], since: str, before_id: str, limit: int
    ) -> list[Message]:
        ids = texts(chat_ids)
        if not ids:
            return []
        cursor = self.messages.find(
            {"chat_id": {"$in": ids}, "updated_at": {"$gt": text(since)}, "_id": {"$lte": text(before_id)}}
        ).sort([("updated_at", ASCENDING), ("_id", ASCENDING)])
        return [_message(doc) for doc in await page_of(cursor, 0, count(limit))]

    # uploads
    async def insert_upload(self, upload: Upload) -> None:
        doc = to_doc(upload)
        text(doc["_id"])
        try:
            await self.uploads.insert_one(doc)
        except DuplicateKeyError as exc:
            raise await named(duplicate_key(exc), self.uploads, upload.id, {}) from None

    async def get_upload(self, upload_id: str) -> Upload | None:
        doc = await self.uploads.find_one({"_id": text(upload_id)})
        return from_doc(Upload, doc) if doc is not None else None
