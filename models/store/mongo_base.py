"""The MongoDB backend's connection, indexes, error translation and input checks.

`MongoStore` runs on `pymongo.AsyncMongoClient` (PyMongo's own async API). Every
collection is opened with majority write concern, so a write has reached a
majority of the replica set before the store returns, and so before any ack or
201 reaches a client. Our ids are 24 hex characters that sort by creation time;
they are kept as strings in `_id`, so `_id` order is time order and history pages
walk the `_id` index from a cursor instead of skipping.

No value reaches a filter unchecked: every id or text a filter uses goes through
`text()`, which refuses anything but a `str` (a JSON object where a string belongs
would otherwise be a query operator), searches match `re.escape`d text, and the
`changes` of an update may only name known document fields and hold plain values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from models.store.base import ConstraintViolation, DuplicateKey, Store, StoreError, StoreUnavailable
from models.store.fields import check_changes, field_names

DEFAULT_DATABASE = "whatschat"
COLLECTIONS = ("users", "sessions", "reset_tokens", "blocks", "chats", "members", "messages", "uploads", "calls")

# (collection, name, keys, options): created at every start-up; create_index is a no-op when it exists.
INDEXES: list[tuple[str, str, list[tuple[str, int]], dict[str, Any]]] = [
    ("users", "email_unique", [("email", ASCENDING)], {"unique": True}),
    # usernames are unique ignoring case, and listed in that order: a lowered copy carries both
    ("users", "username_unique", [("username_lower", ASCENDING)], {"unique": True}),
    ("sessions", "user_live", [("user_id", ASCENDING), ("revoked_at", ASCENDING)], {}),
    ("blocks", "blocker", [("blocker_id", ASCENDING), ("blocked_id", ASCENDING)], {}),
    ("blocks", "blocked", [("blocked_id", ASCENDING), ("blocker_id", ASCENDING)], {}),
    # unique where present: groups store no `pair_key` at all. A sparse index, not a partial one: FerretDB
    # (1.24) has no `partialFilterExpression`, and both servers take this (see `_open` for older databases)
    ("chats", "pair_key_unique", [("pair_key", ASCENDING)], {"unique": True, "sparse": True}),
    ("chats", "activity", [("last_activity", DESCENDING), ("last_key", DESCENDING), ("_id", DESCENDING)], {}),
    ("members", "chat_joined", [("chat_id", ASCENDING), ("joined_at", ASCENDING), ("user_id", ASCENDING)], {}),
    ("members", "user_chats", [("user_id", ASCENDING), ("archived", ASCENDING), ("chat_id", ASCENDING)], {}),
    ("messages", "chat_history", [("chat_id", ASCENDING), ("_id", ASCENDING)], {}),
    ("messages", "chat_changed", [("chat_id", ASCENDING), ("updated_at", ASCENDING)], {}),
    # a sender's `client_id` is unique: one field `<sender_id>:<client_id>`, present only with a client id,
    # because a compound sparse index still indexes documents that have only the sender
    ("messages", "client_key_unique", [("client_key", ASCENDING)], {"unique": True, "sparse": True}),
    ("calls", "member_calls", [("member_ids", ASCENDING), ("_id", DESCENDING)], {}),
    ("calls", "member_calls_by_type", [("member_ids", ASCENDING), ("type", ASCENDING), ("_id", DESCENDING)], {}),
]

# the document field a unique key stands for, when it is not the key itself
_KEY_FIELDS = {"username_lower": "username", "client_key": "client_id", "_id": "id"}
_INDEX_FIELDS = {
    "email_unique": "email",
    "username_unique": "username",
    "pair_key_unique": "pair_key",
    "client_key_unique": "client_id",
    "_id_": "id",
}
_INDEX_IN_MESSAGE = re.compile(r"index: (\S+)")
# FerretDB (1.24) answers a unique violation by an update with its SQLite error, naming `<collection>_<hash>_<index>`
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: index '[^']*?_[0-9a-f]{8}_([^']+)'")
_DUPLICATE_CODE = 11000
Collection = AsyncCollection[dict[str, Any]]
_Record = TypeVar("_Record")


def client_key(sender_id: str, client_id: str) -> str:
    """What makes a client id unique per sender, as one field (`client_key_unique`)."""
    return f"{sender_id}:{client_id}"


def duplicate_key(exc: DuplicateKeyError) -> DuplicateKey:
    """Name the unique field from the server's answer (`keyPattern`, else the index name in the message)."""
    return _duplicate(exc.details or {}, str(exc))


def _duplicate(details: Mapping[str, Any], message: str) -> DuplicateKey:
    """A duplicate key error's answer (or a bulk write's write error) as `DuplicateKey(field)`.

    The field is `""` when the server names neither key nor index (FerretDB): the
    writes whose documents have unique fields name it with `named`.
    """
    pattern = details.get("keyPattern") or {}
    if pattern:
        key = list(pattern)[-1]
        return DuplicateKey(_KEY_FIELDS.get(key, key))
    found = _INDEX_IN_MESSAGE.search(message)
    return DuplicateKey(_INDEX_FIELDS.get(found.group(1), "id") if found else "")


async def named(duplicate: DuplicateKey, collection: Collection, doc_id: Any, keys: dict[str, Any]) -> DuplicateKey:
    """`duplicate` with its field, looked up when the server named none (FerretDB): the first of `keys`
    (document field -> stored key and value) that another document holds, else the id."""
    if duplicate.field:
        return duplicate
    for field, (key, value) in keys.items():
        if value is not None and await collection.find_one({key: value, "_id": {"$ne": doc_id}}, {"_id": 1}):
            return DuplicateKey(field)
    return DuplicateKey("id")


# server error codes that say the server cannot serve now (shutting down, stepping down, unreachable, too slow)
_UNAVAILABLE_CODES = frozenset({6, 7, 50, 89, 91, 189, 262, 10107, 11600, 11602, 13435, 13436})
_VALIDATION_FAILED = 121


def _server_error(exc: PyMongoError) -> dict[str, Any]:
    """The server's answer with its `code`: a bulk write's first write error, none for a client-side error."""
    if not isinstance(exc, OperationFailure):
        return {}
    details = exc.details or {}
    if isinstance(exc, BulkWriteError):
        first: dict[str, Any] = (details.get("writeErrors") or [{}])[0]
        return first
    return {**details, "code": exc.code}


def store_error(exc: PyMongoError) -> StoreError:
    """The store error for a driver error: this backend's one translation (see `models/store/base.py`)."""
    if isinstance(exc, DuplicateKeyError):
        return duplicate_key(exc)
    error = _server_error(exc)
    code = error.get("code")
    message = f"MongoDB: {_first_line(exc)}"
    if code == _DUPLICATE_CODE:
        return _duplicate(error, str(error.get("errmsg", exc)))
    if unique := _SQLITE_UNIQUE.search(str(exc)):
        return DuplicateKey(_INDEX_FIELDS.get(unique.group(1), unique.group(1)))
    if code == _VALIDATION_FAILED:
        return ConstraintViolation(message)
    if isinstance(exc, (ConnectionFailure, WTimeoutError, ExecutionTimeout)) or code in _UNAVAILABLE_CODES:
        return StoreUnavailable(message)
    return StoreError(message)


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except PyMongoError as exc:
            raise store_error(exc) from exc

    return run


def _first_line(exc: Exception) -> str:
    text = str(exc)
    return text.split(", Timeout:", 1)[0].split(" (configured timeouts:", 1)[0].split("\n", 1)[0][:300]


def text(value: Any) -> str:
    """A string that goes into a filter, or `TypeError`: a dict here would be a query operator."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def texts(values: Iterable[Any]) -> list[str]:
    if isinstance(values, (str, dict)):
        raise TypeError(f"expected a list of strings, got {type(values).__name__}")
    return list(dict.fromkeys(text(v) for v in values))


def count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return max(value, 0)


def contains(search: Any) -> dict[str, str]:
    """Case-insensitive substring: the user's text, escaped, is never a pattern of its own."""
    return {"$regex": re.escape(text(search)), "$options": "i"}


def checked_changes(changes: dict[str, Any], allowed: frozenset[str], booleans: frozenset[str]) -> dict[str, Any]:
    """`changes` as a `$set`: checked as every backend checks them (`check_changes`), flags as booleans."""
    check_changes(changes, allowed)
    return {name: bool(value) if name in booleans else value for name, value in changes.items()}


def to_doc(record: Any, *, key: str | None = None) -> dict[str, Any]:
    """A dataclass as a document: its `id` becomes `_id` (or `key` when it has none)."""
    data = dataclasses.asdict(record)
    data["_id"] = data.pop("id") if key is None else key
    return data


def from_doc(cls: type[_Record], doc: Mapping[str, Any]) -> _Record:
    """The dataclass of a document; internal fields (`_id` aside) are left out."""
    names = field_names(cls)
    data = {name: value for name, value in doc.items() if name in names}
    if "id" in names:
        data["id"] = doc["_id"]
    return cls(**data)


async def page_of(cursor: Any, skip: int, limit: int) -> list[dict[str, Any]]:
    """`limit` documents after `skip` (`limit(0)` means no limit to MongoDB, an empty page to us)."""
    if limit <= 0:
        return []
    if skip:
        cursor = cursor.skip(skip)
    docs: list[dict[str, Any]] = await cursor.limit(limit).to_list(None)
    return docs


class MongoBase(Store):
    """The client, the collections and the indexes the collection groups share.

    Every public coroutine a subclass defines is wrapped, once, here: driver
    errors leave as the store errors of `models/store/base.py`, decided in one
    place, `store_error` (a duplicate key, a failed validation, a server that cannot
    be reached or cannot serve now, anything else). `TypeError`/`ValueError` from
    the input checks pass unchanged.
    """

    name = "mongodb"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, value in list(vars(cls).items()):
            if not attr.startswith("_") and inspect.iscoroutinefunction(value):
                setattr(cls, attr, _translated(value))

    def __init__(
        self, url: str, *, database: str | None = None, client: Callable[[str], Any] = AsyncMongoClient
    ) -> None:
        """`client` makes the client from the URL (`AsyncMongoClient`; tests pass one that records commands)."""
        self.url = url
        self.database_name = database
        self._client_factory = client
        self.client: Any = None
        self.db: Any = None
        self._collections: dict[str, Collection] = {}

    def collection(self, name: str) -> Collection:
        if not self._collections:
            raise StoreUnavailable("MongoDB: store is not open")
        return self._collections[name]

    @property
    def users(self) -> Collection:
        return self.collection("users")

    @property
    def sessions(self) -> Collection:
        return self.collection("sessions")

    @property
    def reset_tokens(self) -> Collection:
        return self.collection("reset_tokens")

    @property
    def blocks(self) -> Collection:
        return self.collection("blocks")

    @property
    def chats(self) -> Collection:
        return self.collection("chats")

    @property
    def members(self) -> Collection:
        return self.collection("members")

    @property
    def messages(self) -> Collection:
        return self.collection("messages")

    @property
    def uploads(self) -> Collection:
        return self.collection("uploads")

    @property
    def calls(self) -> Collection:
        return self.collection("calls")

    async def _open(self) -> None:
        self.client = self._client_factory(self.url)
        majority = WriteConcern("majority")
        if self.database_name:
            self.db = self.client.get_database(self.database_name, write_concern=majority)
        else:
            self.db = self.client.get_default_database(DEFAULT_DATABASE, write_concern=majority)
        self._collections = {name: self.db.get_collection(name, write_concern=majority) for name in COLLECTIONS}
        await self._upgrade()
        for collection, name, keys, options in INDEXES:
            await self._collections[collection].create_index(keys, name=name, **options)

    async def _upgrade(self) -> None:
        """Bring a database written by an older WhatsChat to today's documents and indexes, before they are built.

        Unique keys were partial indexes, which FerretDB does not have: groups stored
        `pair_key: null` and messages were unique on (sender, client id). Now a group
        stores no `pair_key` and a message with a client id carries `client_key`, each
        under a sparse unique index. Every step finds nothing to do once done.
        """
        chats, messages = self._collections["chats"], self._collections["messages"]
        for collection, old in ((chats, "pair_key_unique"), (messages, "client_id_unique")):
            indexes = await collection.index_information()
            if old in indexes and "partialFilterExpression" in indexes[old]:
                await collection.drop_index(old)
        await chats.update_many({"pair_key": None}, {"$unset": {"pair_key": ""}})
        older = messages.find({"client_id": {"$type": "string"}, "client_key": {"$exists": False}})
        for doc in await older.to_list(None):
            key = client_key(doc["sender_id"], doc["client_id"])
            await messages.update_one({"_id": doc["_id"]}, {"$set": {"client_key": key}})

    async def open(self) -> None:
        try:
            await self._open()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self.close()
            if isinstance(exc, PyMongoError):
                raise store_error(exc) from exc
            raise

    @_translated
    async def close(self) -> None:
        if self.client is not None:
            client, self.client, self._collections = self.client, None, {}
            await client.close()

    @_translated
    async def ping(self) -> None:
        if self.client is None:
            raise StoreUnavailable("MongoDB: store is not open")
        await self.db.command("ping")
