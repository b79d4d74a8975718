"""What only the MongoDB backend has: write concern, indexes, its error translation, no collection scans.

The behaviour every backend shares is in `test_store_contract.py`; these run on
FerretDB always and on a real MongoDB when `WHATSCHAT_TEST_MONGODB_URL` is set.
FerretDB (on SQLite) has no query planner to ask, so the no-scan check reads the
filter and sort of every command the driver sends (PyMongo's command monitoring)
against the indexes the store declared; on a real MongoDB `explain()` says it too.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure, WriteError

from models.clock import new_id
from models.store import (
    DEFAULT_MONGODB_URL,
    ConstraintViolation,
    DuplicateKey,
    StoreError,
    StoreUnavailable,
    create_store,
)
from models.store.mongo import MongoStore
from models.store.mongo_base import COLLECTIONS, INDEXES, duplicate_key
from server.config import load_config
from tests import store_backends
from tests.ferretdb_support import FerretDB, shared_url
from tests.store_backends import MONGO_BACKENDS, REAL_MONGODB, Backend
from tests.test_store_contract import a_call, a_member, a_session, a_user, group, send, users

backend, store = store_backends.backend, store_backends.store
on_mongo = pytest.mark.parametrize("backend", MONGO_BACKENDS, indirect=True)
on_real_server = pytest.mark.parametrize("backend", REAL_MONGODB, indirect=True)


@on_mongo
async def test_every_collection_writes_with_majority_write_concern(store: MongoStore):
    for name in COLLECTIONS:
        assert store.collection(name).write_concern.document == {"w": "majority"}, name


@on_mongo
async def test_indexes_are_created_at_start_up_and_again_without_harm(backend: Backend, store: MongoStore):
    async def declared() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for name in COLLECTIONS:
            for index, info in (await store.collection(name).index_information()).items():
                found[f"{name}.{index}"] = info
        return found

    before = await declared()
    for collection, name, keys, options in INDEXES:
        info = before[f"{collection}.{name}"]
        assert [(key, int(direction)) for key, direction in info["key"]] == keys
        assert bool(info.get("unique")) == bool(options.get("unique")), name
        assert info.get("partialFilterExpression") == options.get("partialFilterExpression"), name
    again = await backend.open()  # a second start-up on the same database
    assert again is not store
    assert await declared() == before


@on_mongo
async def test_driver_errors_become_store_errors(store: MongoStore, monkeypatch):
    async def lost(*_: Any, **__: Any) -> Any:
        raise AutoReconnect("connection lost")

    monkeypatch.setattr(store.users, "find_one", lost)
    with pytest.raises(StoreError, match="connection lost") as caught:
        await store.get_user(new_id())
    assert isinstance(caught.value.__cause__, AutoReconnect)


@on_mongo
async def test_each_driver_error_becomes_its_store_error(store: MongoStore, monkeypatch):
    """Lost connections are `StoreUnavailable`, a failed document validation a `ConstraintViolation`."""
    errors: list[Exception] = [
        DuplicateKeyError("E11000 index: email_unique dup key", 11000),
        WriteError("Document failed validation", 121),
        AutoReconnect("connection lost"),
        OperationFailure("unknown operator: $nope", 2),
    ]
    expected = [DuplicateKey, ConstraintViolation, StoreUnavailable, StoreError]

    async def failing(*_: Any, **__: Any) -> Any:
        raise errors.pop(0)

    monkeypatch.setattr(store.users, "insert_one", failing)
    for kind in expected:
        with pytest.raises(StoreError) as caught:
            await store.insert_user(a_user("alice"))
        assert type(caught.value) is kind


def test_the_duplicate_field_is_named_from_the_key_pattern_or_else_the_index_name():
    def error(message: str, details: dict[str, Any] | None = None) -> DuplicateKeyError:
        return DuplicateKeyError(message, 11000, details)

    assert duplicate_key(error("E11000", {"keyPattern": {"username_lower": 1}})).field == "username"
    assert duplicate_key(error("E11000", {"keyPattern": {"client_key": 1}})).field == "client_id"
    assert duplicate_key(error("E11000", {"keyPattern": {"_id": 1}})).field == "id"
    message = "E11000 duplicate key error collection: whatschat.users index: email_unique dup key: { email: 1 }"
    assert duplicate_key(error(message)).field == "email"
    # FerretDB names neither: the write that failed looks its unique fields up (`named`)
    assert duplicate_key(error("E11000 duplicate key error collection: whatschat.users")).field == ""


async def _workload(store: MongoStore) -> None:
    """One call of every store method that reads or writes by a filter."""
    alice, bob = await users(store, "alice", "bob")
    await store.get_user(alice.id)
    await store.get_users([alice.id, bob.id])
    await store.get_user_by_email(alice.email)
    await store.update_user(alice.id, {"status": "x"})
    session = a_session(alice)
    await store.insert_session(session)
    await store.get_session(session.id)
    await store.rotate_refresh(session.id, session.refresh_jti, new_id(), "2030")
    await store.revoke_user_sessions(alice.id, "2030", keep=session.id)
    await store.revoke_session(session.id, "2030")
    await store.insert_reset_token("h", alice.id, "2031")
    await store.consume_reset_token("h", "2030")
    await store.set_block(alice.id, bob.id, "2030", True)
    await store.is_blocked(alice.id, bob.id)
    await store.blocked_ids(alice.id)
    await store.blocked_ids_of(bob.id, [alice.id])
    await store.set_block(alice.id, bob.id, "2030", False)
    chat = await group(store, alice, bob)
    await store.get_chat(chat.id)
    await store.get_private_chat("a:b")
    await store.update_chat(chat.id, {"name": "n"})
    await store.add_members([a_member(chat.id, alice.id)])
    await store.get_member(chat.id, bob.id)
    await store.list_members(chat.id)
    await store.update_member(chat.id, bob.id, {"muted": 1})
    message = await send(store, chat, alice, client_id="c")
    await store.advance_mark(chat.id, bob.id, "last_read_id", message.id)
    await store.user_chats(alice.id, False, "group", 1, 10)
    await store.user_chat_ids(alice.id)
    await store.shared_chat_user_ids(alice.id)
    await store.get_message(message.id)
    await store.get_messages([message.id])
    await store.get_message_by_client_id(alice.id, "c")
    await store.update_message(message.id, {"content": "y"})
    await store.list_messages(chat.id, limit=10, before=message.id)
    await store.list_messages(chat.id, limit=10, after=message.id, search="y")
    await store.count_messages(chat.id)
    await store.count_messages(chat.id, "y")
    await store.count_unread(chat.id, bob.id, None)
    await store.members_and_unread([chat.id], bob.id, {chat.id: None})
    await store.messages_after([chat.id], "", 10)
    await store.messages_changed_since([chat.id], "", message.id, 10)
    await store.save_call(a_call(alice, bob))
    await store.user_calls(alice.id, "audio", 1, 10)
    await store.remove_member(chat.id, bob.id)
    await store.delete_chat(chat.id)
    await store.delete_user(bob.id)


def _scans_by_design(collection: str, where: dict[str, Any]) -> bool:
    """`count_users` and `search_users` read every user on every backend (SQLite: COUNT(*), LIKE '%x%')."""
    return collection == "users" and (not where or "$or" in where)


@dataclasses.dataclass
class Query:
    """One command that picks documents: its collection, its filter and (find, findAndModify) its sort keys."""

    command: str
    collection: str
    filter: dict[str, Any]
    sort: list[str]


class QueryRecorder(monitoring.CommandListener):
    """Keeps every command the driver sends that picks documents by a filter, as `Query`s.

    Read from the commands themselves, so it sees exactly what reaches the server
    (whatever server that is): a find's `filter` and `sort`, each statement of an
    update or delete (`q`), a count or distinct's `query`, a findAndModify's `query`
    and `sort`, and an aggregate's leading `$match`, the stage that picks the
    documents and so the index.
    """

    def __init__(self) -> None:
        self.queries: list[Query] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name, command = event.command_name, event.command
        collection = command.get(name)
        if name == "find":
            self._keep(name, collection, command.get("filter"), command.get("sort"))
        elif name in ("update", "delete"):
            for statement in command.get(f"{name}s", []):
                self._keep(name, collection, statement.get("q"))
        elif name in ("count", "distinct"):
            self._keep(name, collection, command.get("query"))
        elif name == "findAndModify":
            self._keep(name, collection, command.get("query"), command.get("sort"))
        elif name == "aggregate":
            first = (command.get("pipeline") or [{}])[0]
            self._keep(name, collection, first.get("$match"))

    def _keep(self, command: str, collection: str, where: Mapping[str, Any] | None, sort: Any = None) -> None:
        self.queries.append(Query(command, collection, dict(where or {}), list(sort or {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@on_mongo
async def test_no_query_reads_a_whole_collection(backend: Backend):
    """Every filter the store sends starts on an indexed field, checked on the commands themselves.

    FerretDB has no query planner to ask (`explain()`), so this reads what the
    store asked for against the indexes it declared; start-up's own queries count.
    """
    recorder = QueryRecorder()
    store = await backend.open(client=lambda url: AsyncMongoClient(url, event_listeners=[recorder]))
    assert isinstance(store, MongoStore)
    await _workload(store)
    leading: dict[str, set[str]] = {name: {"_id"} for name in COLLECTIONS}
    for collection, _, keys, _ in INDEXES:
        leading[collection].add(keys[0][0])
    assert recorder.queries
    for query in recorder.queries:
        if _scans_by_design(query.collection, query.filter):
            continue
        assert leading[query.collection] & set(query.filter), f"{query} reads the whole collection"
    history = [q for q in recorder.queries if q.collection == "messages" and q.sort]
    assert history and all(q.sort[0] in ("_id", "updated_at") for q in history)


if REAL_MONGODB:  # only a real server has a query planner to ask

    @on_real_server
    async def test_a_history_page_reads_only_its_page_on_a_real_server(store: MongoStore):
        (alice,) = await users(store, "alice")
        chat = await group(store, alice)
        sent = [await send(store, chat, alice, f"m{n}", when=n) for n in range(30)]
        cursor = store.messages.find({"chat_id": chat.id, "_id": {"$lt": sent[20].id}}).sort("_id", -1).limit(5)
        plan = await cursor.explain()
        text = str(plan)
        assert "COLLSCAN" not in text and "IXSCAN" in text, text
        stats = plan.get("executionStats", {})
        if stats:
            assert stats["totalDocsExamined"] <= 5, stats


async def test_the_database_is_named_by_the_url_or_whatschat(tmp_path):
    """On a FerretDB of its own: the URL without a name writes to `whatschat`, which no other test may share."""
    server = FerretDB(tmp_path / "ferretdb").start()
    named = MongoStore(server.url + "custom")
    default = MongoStore(server.url)
    try:
        for opened in (named, default):
            await opened.open()
        assert (named.db.name, default.db.name) == ("custom", "whatschat")
        assert {"custom", "whatschat"} <= set(await named.client.list_database_names())
    finally:
        for opened in (named, default):
            await opened.close()
        server.stop()


async def test_create_store_selects_mongodb_by_configuration(tmp_path):
    """The URL and the `mongo_client` factory reach the store it opens: WhatsChat's part, so FerretDB suffices."""
    config = load_config(None, {}).replace(data_dir=str(tmp_path), database={"backend": "mongodb"})
    chosen = create_store(config)
    assert isinstance(chosen, MongoStore) and chosen.url == DEFAULT_MONGODB_URL and chosen.name == "mongodb"
    url = shared_url() + f"chat_{uuid.uuid4().hex[:16]}"
    made: list[AsyncMongoClient[Any]] = []

    def client(at: str) -> AsyncMongoClient[Any]:
        """`AsyncMongoClient`, kept, to see that `mongo_client` is the factory the store uses."""
        made.append(AsyncMongoClient(at))
        return made[-1]

    chosen = create_store(config.replace(database={"url": url}), mongo_client=client)
    assert isinstance(chosen, MongoStore) and chosen.url == url
    database = url.rsplit("/", 1)[1]
    await chosen.open()
    try:
        assert made == [chosen.client] and chosen.db.name == database
        await chosen.ping()
    finally:
        await chosen.client.drop_database(database)
        await chosen.close()
