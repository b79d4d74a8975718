"""The SQLite store: versioned schema, WAL, and the hot lookups on indexes.

The query plans are taken of the SQL the store really runs: each lookup is
called once with its helpers recorded, then every statement it ran is explained.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from models.clock import iso_in, new_id, now_iso
from models.documents import Session, User
from models.store import sqlite_base
from models.store.sqlite import SqliteStore


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
    """Run `call` recording every read statement, then explain each one."""
    ran: list[tuple[str, tuple[Any, ...]]] = []
    for helper in ("_one", "_all"):
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
