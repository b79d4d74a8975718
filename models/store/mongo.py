"""The MongoDB store: users, logins, reset tokens and blocks here; chats and calls in their collection groups.

Where SQLite uses a conditional UPDATE, this uses the same condition in the
filter of a single-document update, which MongoDB applies atomically: a refresh
id rotates once, a reset token is consumed once, a receipt mark only moves forward.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError, OperationFailure

from models.documents import Page, Session, User
from models.store.base import DuplicateKey
from models.store.fields import USER_FIELDS
from models.store.mongo_base import (
    checked_changes,
    contains,
    count,
    duplicate_key,
    from_doc,
    named,
    page_of,
    store_error,
    text,
    texts,
    to_doc,
)
from models.store.mongo_calls import CallCollections
from models.store.mongo_chats import ChatCollections

_NO_FLAGS: frozenset[str] = frozenset()


def _user(doc: dict[str, Any] | None) -> User | None:
    return from_doc(User, doc) if doc is not None else None


def _block_key(blocker_id: Any, blocked_id: Any) -> str:
    return f"{text(blocker_id)}:{text(blocked_id)}"


class MongoStore(ChatCollections, CallCollections):
    """`Store` on `pymongo.AsyncMongoClient`, majority write concern, ids as time-sorted string `_id`s."""

    # users
    async def insert_user(self, user: User) -> None:
        doc = to_doc(user)
        doc["username_lower"] = text(user.username).lower()
        text(user.email)
        try:
            await self.users.insert_one(doc)
        except DuplicateKeyError as exc:
            keys = {"email": ("email", user.email), "username": ("username_lower", doc["username_lower"])}
            raise await named(duplicate_key(exc), self.users, user.id, keys) from None

    async def get_user(self, user_id: str) -> User | None:
        return _user(await self.users.find_one({"_id": text(user_id)}))

    async def get_users(self, user_ids: list[str]) -> dict[str, User]:
        ids = texts(user_ids)
        if not ids:
            return {}
        docs = await self.users.find({"_id": {"$in": ids}}).to_list(None)
        return {doc["_id"]: from_doc(User, doc) for doc in docs}

    async def get_user_by_email(self, email: str) -> User | None:
        return _user(await self.users.find_one({"email": text(email)}))

    async def update_user(self, user_id: str, changes: dict[str, Any]) -> User | None:
        values = checked_changes(changes, USER_FIELDS, _NO_FLAGS)
        if "username" in values:
            values["username_lower"] = text(values["username"]).lower()
        if values:
            try:
                await self.users.update_one({"_id": text(user_id)}, {"$set": values})
            except (DuplicateKeyError, OperationFailure) as exc:
                duplicate = duplicate_key(exc) if isinstance(exc, DuplicateKeyError) else store_error(exc)
                if not isinstance(duplicate, DuplicateKey):
                    raise
                keys = {
                    "email": ("email", values.get("email")),
                    "username": ("username_lower", values.get("username_lower")),
                }
                raise await named(duplicate, self.users, user_id, keys) from None
        return await self.get_user(user_id)

    async def delete_user(self, user_id: str) -> bool:
        return (await self.users.delete_one({"_id": text(user_id)})).deleted_count > 0

    async def search_users(self, query: str | None, page: int, limit: int, emails: bool = True) -> Page:
        where: dict[str, Any] = {}
        if query is not None and text(query):
            pattern = contains(query)
            fields = ["username", "display_name", *(["email"] if emails else [])]
            where = {"$or": [{field: pattern} for field in fields]}
        total = await self.users.count_documents(where)
        cursor = self.users.find(where).sort([("username_lower", ASCENDING), ("_id", ASCENDING)])
        docs = await page_of(cursor, max(count(page) - 1, 0) * count(limit), count(limit))
        return Page([from_doc(User, doc) for doc in docs], total, page, limit)

    async def count_users(self) -> int:
        return await self.users.count_documents({})

    # sessions
    async def insert_session(self, session: Session) -> None:
        doc = to_doc(session)
        doc["user_id"], doc["revoked_at"] = text(session.user_id), None
        await self.sessions.insert_one(doc)

    async def get_session(self, session_id: str) -> Session | None:
        doc = await self.sessions.find_one({"_id": text(session_id)})
        return from_doc(Session, doc) if doc is not None else None

    async def rotate_refresh(self, session_id: str, old_jti: str, new_jti: str, expires_at: str) -> bool:
        result = await self.sessions.update_one(
            {"_id": text(session_id), "refresh_jti": text(old_jti), "revoked_at": None},
            {"$set": {"refresh_jti": text(new_jti), "expires_at": text(expires_at)}},
        )
        return result.matched_count == 1

    async def revoke_session(self, session_id: str, at: str) -> None:
        await self.sessions.update_one(
            {"_id": text(session_id), "revoked_at": None}, {"$set": {"revoked_at": text(at)}}
        )

    async def revoke_user_sessions(self, user_id: str, at: str, keep: str | None = None) -> list[str]:
        where: dict[str, Any] = {"user_id": text(user_id), "revoked_at": None}
        if keep is not None:
            where["_id"] = {"$ne": text(keep)}
        ids = [doc["_id"] for doc in await self.sessions.find(where, {"_id": 1}).to_list(None)]
        if ids:
            # a session that logged out in between is revoked either way; one that logs in after is not ours
            await self.sessions.update_many(
                {"_id": {"$in": ids}, "revoked_at": None}, {"$set": {"revoked_at": text(at)}}
            )
        return ids

    # password reset
    async def insert_reset_token(self, token_hash: str, user_id: str, expires_at: str) -> None:
        await self.reset_tokens.insert_one(
            {"_id": text(token_hash), "user_id": text(user_id), "expires_at": text(expires_at), "used_at": None}
        )

    async def consume_reset_token(self, token_hash: str, now: str) -> str | None:
        doc = await self.reset_tokens.find_one_and_update(
            {"_id": text(token_hash), "used_at": None, "expires_at": {"$gt": text(now)}},
            {"$set": {"used_at": now}},
        )
        return doc["user_id"] if doc is not None else None

    # blocks
    async def set_block(self, blocker_id: str, blocked_id: str, at: str, blocked: bool) -> None:
        key = _block_key(blocker_id, blocked_id)
        if not blocked:
            await self.blocks.delete_one({"_id": key})
            return
        # the same block upserted at the same moment fails on `_id`: it is there, as wanted
        with contextlib.suppress(DuplicateKeyError):
            await self.blocks.update_one(
                {"_id": key},
                {"$setOnInsert": {"blocker_id": blocker_id, "blocked_id": blocked_id, "created_at": text(at)}},
                upsert=True,
            )

    async def is_blocked(self, blocker_id: str, blocked_id: str) -> bool:
        return await self.blocks.find_one({"_id": _block_key(blocker_id, blocked_id)}, {"_id": 1}) is not None

    async def blocked_ids(self, blocker_id: str) -> list[str]:
        docs = await self.blocks.find({"blocker_id": text(blocker_id)}, {"blocked_id": 1}).to_list(None)
        return [doc["blocked_id"] for doc in docs]

    async def blocked_ids_of(self, blocked_id: str, blocker_ids: list[str]) -> list[str]:
        ids = texts(blocker_ids)
        if not ids:
            return []
        docs = await self.blocks.find(
            {"blocked_id": text(blocked_id), "blocker_id": {"$in": ids}}, {"blocker_id": 1}
        ).to_list(None)
        return [doc["blocker_id"] for doc in docs]
