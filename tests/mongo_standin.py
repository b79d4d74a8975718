"""An in-process stand-in for MongoDB: mongomock behind PyMongo's async API.

No MongoDB server can be installed on the machines the tests run on, so every
MongoDB code path of `MongoStore` runs against this on every commit. It presents
the part of `pymongo.AsyncMongoClient` / `AsyncDatabase` / `AsyncCollection` /
`AsyncCursor` that `MongoStore` uses, and runs mongomock's synchronous, in-memory
calls directly inside `async def` methods. `MongoStore` knows nothing of it: the
tests pass `StandinClient` as its client factory.

Where mongomock answers differently from a server in a way the store relies on,
the adapter makes the answer look like the server's, and says so below:

- a duplicate key error names neither index nor key in mongomock; the adapter
  finds the unique index the write collides with and raises the server's
  `DuplicateKeyError` (message `... index: NAME dup key: ...`, `keyPattern`,
  `keyValue` in `details`).

It is a stand-in, not MongoDB: no write concern is enforced (it is recorded),
there is no query planner (`queries` records every filter and sort so a test can
check each one against the declared indexes instead of `explain()`), and
nothing is concurrent.
"""

from __future__ import annotations

import copy
from typing import Any

import mongomock
from mongomock.filtering import filter_applies
from mongomock.store import ServerStore
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, ServerSelectionTimeoutError

NAME = "mongomock-standin"


class Query(dict):
    """One recorded operation: `collection`, `filter`, and for a find the `sort` it was given."""


class StandinCursor:
    def __init__(self, cursor: Any, query: Query) -> None:
        self._cursor = cursor
        self._query = query

    def sort(self, key: Any, direction: int | None = None) -> StandinCursor:
        self._query["sort"] = [(key, direction if direction is not None else 1)] if isinstance(key, str) else key
        self._cursor = self._cursor.sort(key, direction) if direction is not None else self._cursor.sort(key)
        return self

    def skip(self, n: int) -> StandinCursor:
        self._cursor = self._cursor.skip(n)
        return self

    def limit(self, n: int) -> StandinCursor:
        self._cursor = self._cursor.limit(n)
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        docs = list(self._cursor)
        return docs if length is None else docs[:length]

    def __aiter__(self) -> StandinCursor:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return next(self._cursor)
        except StopIteration:
            raise StopAsyncIteration from None


class StandinCollection:
    def __init__(self, collection: Any, queries: list[Query]) -> None:
        self._collection = collection
        self._queries = queries

    @property
    def name(self) -> str:
        return self._collection.name

    @property
    def write_concern(self) -> Any:
        return self._collection.write_concern

    def _record(self, where: dict[str, Any]) -> Query:
        query = Query(collection=self.name, filter=copy.deepcopy(where), sort=None)
        self._queries.append(query)
        return query

    # the server's duplicate key error, which mongomock does not give
    def _unique_collision(self, doc: dict[str, Any], exclude_self: bool) -> DuplicateKeyError | None:
        for name, index in self._collection.index_information().items():
            if (name == "_id_" and exclude_self) or (name != "_id_" and not index.get("unique")):
                continue  # an update keeps its own `_id`
            keys = [key for key, _ in index["key"]]
            values = {key: doc.get(key) for key in keys}
            partial = index.get("partialFilterExpression")
            if partial is not None and not filter_applies(partial, doc):
                continue
            where: dict[str, Any] = dict(values)
            if exclude_self:
                where = {"$and": [values, {"_id": {"$ne": doc["_id"]}}]}
            if partial is not None:
                where = {"$and": [partial, where]}
            if self._collection.find_one(where) is not None:
                database = self._collection.database.name
                message = (
                    f"E11000 duplicate key error collection: {database}.{self.name} index: {name} dup key: {values}"
                )
                details = {"code": 11000, "errmsg": message, "keyPattern": dict(index["key"]), "keyValue": values}
                return DuplicateKeyError(message, 11000, details)
        return None

    def _after_update(self, where: dict[str, Any], update: dict[str, Any], upsert: bool) -> dict[str, Any] | None:
        """The document `update` would leave, worked out on a scratch copy."""
        scratch = mongomock.MongoClient().db.scratch
        found = self._collection.find_one(where)
        if found is not None:
            scratch.insert_one(found)
            scratch.update_one({"_id": found["_id"]}, update)
        elif upsert:
            scratch.update_one(where, update, upsert=True)
        return scratch.find_one({})

    # reads
    def find(self, where: dict[str, Any] | None = None, projection: Any = None) -> StandinCursor:
        query = self._record(where or {})
        return StandinCursor(self._collection.find(where or {}, projection), query)

    async def find_one(self, where: dict[str, Any] | None = None, projection: Any = None) -> dict[str, Any] | None:
        self._record(where or {})
        return self._collection.find_one(where or {}, projection)

    async def count_documents(self, where: dict[str, Any]) -> int:
        self._record(where)
        return self._collection.count_documents(where)

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> StandinCursor:
        """Recorded by its leading `$match`, the stage that picks the documents (and so the index)."""
        first = pipeline[0] if pipeline else {}
        query = self._record(first.get("$match", {}))
        return StandinCursor(iter(list(self._collection.aggregate(pipeline))), query)

    async def distinct(self, key: str, where: dict[str, Any] | None = None) -> list[Any]:
        self._record(where or {})
        return self._collection.distinct(key, where or {})

    # writes
    async def insert_one(self, doc: dict[str, Any]) -> Any:
        try:
            return self._collection.insert_one(doc)
        except DuplicateKeyError:
            raise self._unique_collision(doc, exclude_self=False) or DuplicateKeyError("E11000", 11000) from None

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> Any:
        return self._collection.insert_many(docs, ordered=ordered)

    async def update_one(self, where: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> Any:
        self._record(where)
        try:
            return self._collection.update_one(where, update, upsert=upsert)
        except DuplicateKeyError:
            after = self._after_update(where, update, upsert)
            raise (after and self._unique_collision(after, exclude_self=True)) or DuplicateKeyError(
                "E11000", 11000
            ) from None

    async def update_many(self, where: dict[str, Any], update: dict[str, Any]) -> Any:
        self._record(where)
        return self._collection.update_many(where, update)

    async def find_one_and_update(
        self,
        where: dict[str, Any],
        update: dict[str, Any],
        projection: Any = None,
        return_document: ReturnDocument = ReturnDocument.BEFORE,
    ) -> dict[str, Any] | None:
        self._record(where)
        return self._collection.find_one_and_update(where, update, projection, return_document=return_document)

    async def delete_one(self, where: dict[str, Any]) -> Any:
        self._record(where)
        return self._collection.delete_one(where)

    async def delete_many(self, where: dict[str, Any]) -> Any:
        self._record(where)
        return self._collection.delete_many(where)

    # indexes
    async def create_index(self, keys: Any, **options: Any) -> str:
        return self._collection.create_index(keys, **options)

    async def index_information(self) -> dict[str, Any]:
        return self._collection.index_information()


class StandinDatabase:
    def __init__(self, database: Any, queries: list[Query]) -> None:
        self._database = database
        self._queries = queries

    @property
    def name(self) -> str:
        return self._database.name

    def get_collection(self, name: str, **options: Any) -> StandinCollection:
        return StandinCollection(self._database.get_collection(name, **options), self._queries)

    async def command(self, command: str | dict[str, Any]) -> dict[str, Any]:
        return self._database.command(command)


class StandinClient:
    """`StandinClient(url)` in place of `pymongo.AsyncMongoClient(url)`: alone, a fresh and empty server."""

    name = NAME

    def __init__(self, host: str = "mongodb://localhost/whatschat", *, server: StandinServer | None = None) -> None:
        self._client = mongomock.MongoClient(host, _store=server.store if server else None)
        self.queries: list[Query] = server.queries if server else []  # every read and write, with its filter
        self.closed = False

    def get_database(self, name: str, **options: Any) -> StandinDatabase:
        return StandinDatabase(self._client.get_database(name, **options), self.queries)

    def get_default_database(self, default: str | None = None, **options: Any) -> StandinDatabase:
        return StandinDatabase(self._client.get_default_database(default, **options), self.queries)

    async def drop_database(self, name: str) -> None:
        self._client.drop_database(name)

    async def close(self) -> None:
        self.closed = True


class StandinServer:
    """One in-memory server that outlives its clients: `MongoStore(url, client=server.client)` reopens onto it."""

    def __init__(self) -> None:
        self.store = ServerStore()
        self.queries: list[Query] = []

    def client(self, host: str) -> StandinClient:
        return StandinClient(host, server=self)


class UnreachableClient:
    """`UnreachableClient(url)`: a client of a server that never answers.

    Like `AsyncMongoClient`, it is made without contacting anyone; every command
    then fails as PyMongo's do once server selection gives up.
    """

    name = NAME

    def __init__(self, host: str = "mongodb://localhost/whatschat") -> None:
        self.host = host

    def _refused(self) -> ServerSelectionTimeoutError:
        return ServerSelectionTimeoutError(f"{self.host}: [Errno 111] Connection refused (stand-in)")

    def get_database(self, name: str, **options: Any) -> UnreachableClient:
        return self

    def get_default_database(self, default: str | None = None, **options: Any) -> UnreachableClient:
        return self

    def get_collection(self, name: str, **options: Any) -> UnreachableClient:
        return self

    async def create_index(self, keys: Any, **options: Any) -> str:
        raise self._refused()

    async def index_information(self) -> dict[str, Any]:
        raise self._refused()

    async def command(self, command: str | dict[str, Any]) -> dict[str, Any]:
        raise self._refused()

    async def close(self) -> None:
        pass
