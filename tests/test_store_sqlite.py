"""The SQLite store: versioned schema, WAL, and the hot lookups on indexes.

The query plans are taken of the SQL the store really runs: each lookup is
called once with its helpers recorded, then every statement it ran is explained.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from models.clock import iso_in, new_id, now_iso
from models.documents import Chat, Member, Message, Session, User
from models.store import sqlite_base
from models.store.base import ConstraintViolation, DuplicateKey, StoreError, StoreUnavailable
from models.store.sqlite import SqliteStore
from models.store.sqlite_schema import MIGRATIONS


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(tmp_path / "store.db")
    await db.open()
    yield db
    await db.close()


def _user(name: str) -> User:
    now = now_iso()
    return User(
        id=new_id(), email=f"{name}@example.com", username=name, password_hash="x", created_at=now, updated_at=now
    )


async def test_schema_version_and_idempotent_reopen(tmp_path):
    path = tmp_path / "store.db"
    first = SqliteStore(path)
    await first.open()
    assert await first.schema_version() == len(sqlite_base.MIGRATIONS) > 0
    alice = _user("alice")
    await first.insert_user(alice)
    await first.close()

    again = SqliteStore(path)
    await again.open()  # runs no migration twice: nothing fails, nothing is lost
    try:
        assert await again.schema_version() == len(sqlite_base.MIGRATIONS)
        assert (await again.get_user(alice.id)).username == "alice"  # type: ignore[union-attr]
        assert await again.count_users() == 1
    finally:
        await again.close()


async def test_wal_mode(store):
    row = await store._one("PRAGMA journal_mode")
    assert row is not None and row[0].lower() == "wal"


async def _plans(store: SqliteStore, call: Callable[[], Awaitable[Any]], monkeypatch) -> list[tuple[str, str]]:
    """Run `call` recording every read statement (and `... RETURNING` write), then explain each one."""
    ran: list[tuple[str, tuple[Any, ...]]] = []
    for helper in ("_one", "_all", "_write_returning"):
        original = getattr(store, helper)

        async def recording(sql: str, params: Any = (), _original: Any = original) -> Any:
            ran.append((sql, tuple(params)))
            return await _original(sql, params)

        monkeypatch.setattr(store, helper, recording)
    await call()
    monkeypatch.undo()
    assert ran, "the lookup ran no query"
    return [(sql, await store.explain(sql, params)) for sql, params in ran]


def _assert_indexed(plans: list[tuple[str, str]], table: str) -> None:
    for sql, plan in plans:
        assert f"SCAN {table}" not in plan, f"{sql}\n{plan}"
        assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), f"{sql}\n{plan}"
        assert f"SEARCH {table}" in plan, f"{sql}\n{plan}"
        assert "USING" in plan and ("INDEX" in plan or "PRIMARY KEY" in plan), f"{sql}\n{plan}"


async def _seed(store: SqliteStore) -> tuple[User, User, Session]:
    alice, bob = _user("alice"), _user("bob")
    for user in (alice, bob, *(_user(f"filler{n}") for n in range(20))):
        await store.insert_user(user)
    session = Session(id=new_id(), user_id=alice.id, refresh_jti=new_id(), created_at=now_iso(), expires_at=iso_in(60))
    await store.insert_session(session)
    await store.set_block(alice.id, bob.id, now_iso(), True)
    return alice, bob, session


async def test_user_lookups_use_indexes(store, monkeypatch):
    alice, _, _ = await _seed(store)
    _assert_indexed(await _plans(store, lambda: store.get_user(alice.id), monkeypatch), "users")
    _assert_indexed(await _plans(store, lambda: store.get_user_by_email(alice.email), monkeypatch), "users")
    _assert_indexed(await _plans(store, lambda: store.get_users([alice.id, new_id()]), monkeypatch), "users")


async def test_session_lookup_uses_its_primary_key(store, monkeypatch):
    _, _, session = await _seed(store)
    _assert_indexed(await _plans(store, lambda: store.get_session(session.id), monkeypatch), "sessions")


async def test_block_lookups_use_indexes(store, monkeypatch):
    alice, bob, _ = await _seed(store)
    assert await store.is_blocked(alice.id, bob.id)
    assert await store.blocked_ids_of(bob.id, [alice.id, new_id()]) == [alice.id]
    _assert_indexed(await _plans(store, lambda: store.is_blocked(alice.id, bob.id), monkeypatch), "blocks")
    _assert_indexed(
        await _plans(store, lambda: store.blocked_ids_of(bob.id, [alice.id, new_id()]), monkeypatch), "blocks"
    )


async def test_revoking_a_users_sessions_uses_an_index(store, monkeypatch):
    alice, _, session = await _seed(store)
    plans = await _plans(store, lambda: store.revoke_user_sessions(alice.id, now_iso()), monkeypatch)
    _assert_indexed(plans, "sessions")
    assert (await store.get_session(session.id)).revoked_at is not None  # type: ignore[union-attr]


async def test_the_plan_check_catches_a_scan(store):
    await _seed(store)
    plan = await store.explain("SELECT id FROM users WHERE status = ?", ("x",))
    with pytest.raises(AssertionError):
        _assert_indexed([("status lookup", plan)], "users")


# message search


async def _chat_with(store: SqliteStore, texts: list[str]) -> tuple[str, list[Message]]:
    now = now_iso()
    alice = _user(f"searcher{new_id()[-6:]}")
    await store.insert_user(alice)
    chat = Chat(new_id(), "group", alice.id, now, now, now, name="search")
    await store.insert_chat(chat, [Member(chat.id, alice.id, "admin", now)])
    sent = []
    for text in texts:
        message = Message(new_id(), chat.id, alice.id, text, "text", now, now)
        await store.insert_message(message)
        sent.append(message)
    return chat.id, sent


async def _like(store: SqliteStore, chat_id: str, term: str) -> list[str]:
    """What `LIKE` finds: the meaning the search index must keep."""
    rows = await store._all(
        "SELECT id FROM messages WHERE chat_id = ? AND deleted = 0 AND content LIKE ? ESCAPE '\\' ORDER BY id DESC",
        (chat_id, sqlite_base.like_pattern(term)),
    )
    return [row["id"] for row in rows]


async def test_the_search_index_finds_what_like_finds(store):
    """Case folds for ASCII letters only, as `LIKE` folds it: `É` and `é` stay different, the Kelvin sign is no K."""
    texts = [
        "École et ÉCOLE",
        "école",
        "Kelvin \u212a and k",
        "İstanbul istanbul",
        "STRASSE straße",
        "emoji 😀😀 here",
        'quotes "" and \\ backslash',
        "100%_done",
        "nul\x00after",
        "   spaces   ",
        "MiXeD CaSe TeXt",
    ]
    chat_id, sent = await _chat_with(store, texts)
    await store.update_message(sent[1].id, {"content": "ÉCOLE again", "updated_at": now_iso()})
    await store.update_message(sent[10].id, {"content": "", "deleted": 1, "updated_at": now_iso()})
    terms = [
        "éco", "ÉCO", "Éco", "eco", "ECOLE", "kelvin \u212a", "\u212a a", "K A", "İst", "ist", "STRASSE", "straß",
        "😀😀", "oji 😀", '""', '" and \\', "0%_", "%_d", "nul", "\x00af", "   ", "mixed case", "XED CA", "text",
        "again", "nothing", "ab",
    ]  # fmt: skip
    for term in terms:
        expected = await _like(store, chat_id, term)
        found = await store.list_messages(chat_id, limit=50, search=term)
        assert [m.id for m in found] == expected, term
        assert await store.count_messages(chat_id, term) == len(expected), term
    # the comparison above is not vacuous: ASCII letters fold, "É" and "é" do not
    assert await _like(store, chat_id, "Éco") == [sent[1].id, sent[0].id]
    assert await _like(store, chat_id, "éco") == []  # "école" was edited away
    assert await _like(store, chat_id, "kelvin \u212a") == [sent[2].id]


async def test_the_search_index_agrees_with_like_on_random_text(store):
    rng = random.Random(7)
    alphabet = "aAbBéÉ %_\"'\\*-"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(150)]
    chat_id, _ = await _chat_with(store, texts)
    for _ in range(150):
        term = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        expected = await _like(store, chat_id, term)
        assert [m.id for m in await store.list_messages(chat_id, limit=200, search=term)] == expected, term
        assert await store.count_messages(chat_id, term) == len(expected), term


async def test_search_reads_the_index_not_the_chat(store, monkeypatch):
    chat_id, _ = await _chat_with(store, [f"message number {n}" for n in range(30)])
    await store.catch_up_search()
    ran: list[tuple[str, list[Any]]] = []
    for reader in store._readers:  # searches read on the readers, never on the writer
        original = reader.execute_fetchall

        async def recording(sql: str, params: Any = (), _original: Any = original) -> Any:
            ran.append((sql, list(params)))
            return await _original(sql, params)

        monkeypatch.setattr(reader, "execute_fetchall", recording)
    assert len(await store.list_messages(chat_id, limit=5, search="number 2")) == 5
    assert await store.count_messages(chat_id, "NUMBER 1") == 11
    monkeypatch.undo()
    ran = [(sql, params) for sql, params in ran if "message_search_pending" not in sql]  # "anything queued?"
    assert len(ran) == 2
    for sql, params in ran:
        plan = await store.explain(sql, params)
        assert "SCAN message_search VIRTUAL TABLE" in plan, plan
        assert "SCAN messages" not in plan and "SCAN k" not in plan, plan


async def test_migrating_a_database_indexes_its_messages_once(tmp_path):
    """A database of the version before the search index: its messages are found after `open`, totals kept."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:3], start=1):
        old.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    now = now_iso()
    old.execute(
        "INSERT INTO chats (id, type, created_by, last_activity, created_at, updated_at)"
        " VALUES (?, 'group', 'u', ?, ?, ?)",
        ("c" * 24, now, now, now),
    )
    ids = [new_id() for _ in range(5)]
    texts = ["Hello world", "hello again", "nothing", "HELLO tombstone", "say hello"]
    for message_id, text, deleted in zip(ids, texts, [0, 0, 0, 1, 0], strict=True):
        old.execute(
            "INSERT INTO messages (id, chat_id, sender_id, content, type, deleted, created_at, updated_at)"
            " VALUES (?, ?, 'u', ?, 'text', ?, ?, ?)",
            (message_id, "c" * 24, text, deleted, now, now),
        )
    old.close()

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.schema_version() == len(MIGRATIONS)
        found = await store.list_messages("c" * 24, limit=10, search="HELLO")
        assert [m.id for m in found] == [ids[4], ids[1], ids[0]]  # the tombstone is not indexed
        assert await store.count_messages("c" * 24, "hello") == 3
        assert await store.count_messages("c" * 24) == 5  # the count kept since migration 2, tombstone included
        await store.update_message(ids[0], {"content": "goodbye", "updated_at": now_iso()})
        assert await store.count_messages("c" * 24, "hello") == 2  # a migrated message follows its edits
        assert [m.id for m in await store.list_messages("c" * 24, limit=10, search="goodbye")] == [ids[0]]
    finally:
        await store.close()
    again = SqliteStore(path)
    await again.open()  # the backfill ran once: no message is indexed twice
    try:
        assert await again.count_messages("c" * 24, "hello") == 2
        keys = await again._one("SELECT COUNT(*) FROM message_search_keys")
        assert keys is not None and keys[0] == 4
    finally:
        await again.close()


async def test_new_messages_are_indexed_in_bulk_and_before_any_search(store):
    chat_id, sent = await _chat_with(store, ["alpha one", "beta two", "gamma three", "alpha four"])
    queued = await store._all("SELECT message_id FROM message_search_pending")
    assert {row[0] for row in queued} == {m.id for m in sent}  # inserting only queued them
    await store.update_message(sent[0].id, {"content": "omega one", "edited_at": now_iso()})  # edited while queued
    await store.update_message(sent[1].id, {"deleted": True, "content": ""})  # deleted while queued
    assert [m.id for m in await store.list_messages(chat_id, limit=10, search="alpha")] == [sent[3].id]
    assert [m.id for m in await store.list_messages(chat_id, limit=10, search="omega")] == [sent[0].id]
    assert await store.count_messages(chat_id, "beta") == 0
    assert await store._all("SELECT message_id FROM message_search_pending") == []
    assert await store.catch_up_search() == 0


async def test_the_background_round_indexes_without_a_search(tmp_path):
    store = SqliteStore(tmp_path / "bulk.db")
    store.index_interval = 0.05
    await store.open()
    try:
        _, sent = await _chat_with(store, ["indexed in the background"])
        for _ in range(100):
            if not await store._all("SELECT 1 FROM message_search_pending"):
                break
            await asyncio.sleep(0.02)
        keys = await store._all("SELECT message_id FROM message_search_keys")
        assert [row[0] for row in keys] == [sent[0].id]
    finally:
        await store.close()


# the chat's last message (migration 5)


async def test_migrating_keeps_the_chats_last_message_from_moving_back(tmp_path):
    """A database whose trigger overwrote the last message: after `open`, an older id never replaces it."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        old.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    old.execute(
        "INSERT INTO chats (id, type, created_by, last_activity, created_at, updated_at)"
        " VALUES (?, 'group', 'u', '2030-01-01T00:00:00.000Z', '2030-01-01T00:00:00.000Z', '2030-01-01T00:00:00.000Z')",
        ("c" * 24,),
    )
    old.close()

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.schema_version() == len(MIGRATIONS) >= 5
        older, newer = (
            Message(new_id(), "c" * 24, "u", text, "text", f"2030-01-01T00:00:0{n}.000Z", f"2030-01-01T00:00:0{n}.000Z")
            for n, text in ((5, "reply"), (6, "newer"))
        )
        await store.insert_message(newer)
        await store.insert_message(older)
        chat = await store.get_chat("c" * 24)
        assert chat is not None
        assert (chat.last_message_id, chat.last_activity, chat.message_count) == (newer.id, newer.created_at, 2)
    finally:
        await store.close()


# errors


async def test_a_locked_database_is_unavailable_not_a_driver_error(store):
    """Another process holding the write lock past the busy timeout: `StoreUnavailable`, which the CLI prints."""
    await store.db.execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked") as caught:
            await store.insert_user(_user("alice"))
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    finally:
        other.close()
    await store.insert_user(_user("bob"))


async def test_each_driver_error_becomes_its_store_error(store):
    """The translation holds inside `transaction()` too, not only around the store's methods."""

    async def one_pair_key_twice() -> None:
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO chats (id, type, created_by, last_activity, created_at, updated_at)"
                " VALUES ('c', 'private', 'u', '', '', ''), ('d', 'private', 'u', '', '', '')"
            )
            await db.execute("UPDATE chats SET pair_key = 'a:b'")

    with pytest.raises(DuplicateKey) as duplicate:
        await one_pair_key_twice()
    assert duplicate.value.field == "pair_key"
    with pytest.raises(ConstraintViolation, match="NOT NULL"):
        await store.insert_user(replace(_user("nobody"), email=None))  # type: ignore[arg-type]
    with pytest.raises(StoreError) as broken:
        await store.explain("SELECT no_such_column FROM users")
    assert not isinstance(broken.value, (DuplicateKey, ConstraintViolation, StoreUnavailable))


# reads on connections of their own


async def test_a_read_does_not_see_a_transaction_before_it_commits(store):
    alice = _user("alice")
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO users (id, email, username, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (alice.id, alice.email, alice.username, alice.password_hash, alice.created_at, alice.updated_at),
        )
        assert await asyncio.create_task(store.get_user(alice.id)) is None  # a concurrent request's read
        assert await store.count_users() == 0
    assert await store.get_user(alice.id) == alice


async def test_a_read_does_not_wait_behind_the_writers_statement(store):
    """The writer busy with a long statement (a big transaction's work): a read still answers at once."""
    slow = asyncio.create_task(
        store.db.execute_fetchall(
            "WITH RECURSIVE n (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000000) SELECT count(*) FROM n"
        )
    )
    await asyncio.sleep(0.01)  # the statement is running on the writer's thread
    assert await store.get_user(new_id()) is None
    assert not slow.done()
    assert list((await slow)[0]) == [3000000]


def _open_files(path: Path) -> list[str]:
    """This process's descriptors open on the database, its WAL or its shared memory."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(path)):
                found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open files")
async def test_close_closes_every_connection(tmp_path):
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    await store.open()
    await store.get_user(new_id())
    await store.insert_user(_user("alice"))
    assert _open_files(path)
    await store.close()
    assert _open_files(path) == []
