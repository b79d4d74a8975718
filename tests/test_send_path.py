"""The send path's store call, on every backend, and SQLite's group commit.

`insert_message_if_allowed` is the one store call of a normal send: it must
refuse (and write nothing for) non-members and blocked senders exactly as the
slow checks would. On SQLite, sends that arrive while a write is in flight are
committed together; each sender's answer must still be its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from models.store.base import DuplicateKey, Store
from models.store.group_commit import GroupCommit
from models.store.sqlite import SqliteStore
from tests import store_backends
from tests.test_store_contract import a_chat, a_member, a_message, group, users

backend, store = store_backends.backend, store_backends.store  # the fixtures, once per backend


async def private(store: Store, a: Any, b: Any) -> Any:
    chat = a_chat(a.id, "private", pair=(a.id, b.id))
    await store.insert_chat(chat, [a_member(chat.id, a.id), a_member(chat.id, b.id)])
    return chat


async def test_members_may_send_and_others_may_not(store: Store) -> None:
    alice, bob, eve = await users(store, "Alice", "Bob", "Eve")
    chat = await group(store, alice, bob)
    assert await store.insert_message_if_allowed(a_message(chat.id, bob.id, "from a member"))
    assert not await store.insert_message_if_allowed(a_message(chat.id, eve.id, "from outside"))
    assert not await store.insert_message_if_allowed(a_message("0" * 24, alice.id, "to no chat"))
    assert [m.content for m in await store.list_messages(chat.id, limit=10)] == ["from a member"]
    assert (await store.get_chat(chat.id)).last_message_id is not None  # type: ignore[union-attr]


async def test_a_block_stops_private_messages_only(store: Store) -> None:
    alice, bob, carol = await users(store, "Alice", "Bob", "Carol")
    direct = await private(store, alice, bob)
    together = await group(store, bob, alice, carol)
    await store.set_block(bob.id, alice.id, "2030-01-01T00:00:00.000Z", True)
    assert not await store.insert_message_if_allowed(a_message(direct.id, alice.id, "blocked"))
    assert await store.insert_message_if_allowed(a_message(direct.id, bob.id, "the blocker may still write"))
    assert await store.insert_message_if_allowed(a_message(together.id, alice.id, "groups ignore blocks"))
    assert [m.content for m in await store.list_messages(direct.id, limit=10)] == ["the blocker may still write"]


async def test_a_repeated_client_id_is_a_duplicate_key(store: Store) -> None:
    alice, bob = await users(store, "Alice", "Bob")
    chat = await group(store, alice, bob)
    assert await store.insert_message_if_allowed(a_message(chat.id, alice.id, "first", client_id="c-1"))
    with pytest.raises(DuplicateKey):
        await store.insert_message_if_allowed(a_message(chat.id, alice.id, "again", client_id="c-1"))
    assert await store.count_messages(chat.id) == 1


@pytest.fixture
async def sqlite(tmp_path: Any) -> Any:
    db = SqliteStore(tmp_path / "send.db")
    await db.open()
    yield db
    await db.close()


async def test_concurrent_sends_commit_together_and_each_gets_its_answer(sqlite: SqliteStore) -> None:
    alice, bob, eve = await users(sqlite, "Alice", "Bob", "Eve")
    chat = await group(sqlite, alice, bob)
    batches: list[int] = []
    many = sqlite._insert_checked_many

    async def recording(messages: list[Any]) -> list[bool]:
        batches.append(len(messages))
        return await many(messages)

    sqlite._insert_checked_many = recording  # type: ignore[method-assign]
    sends = [a_message(chat.id, alice.id, f"m{i}", client_id=f"c{i}") for i in range(40)]
    sends.append(a_message(chat.id, eve.id, "outsider"))  # refused inside a batch
    sends.append(a_message(chat.id, bob.id, "same id twice", client_id="dup"))
    sends.append(a_message(chat.id, bob.id, "same id twice, again", client_id="dup"))  # skipped, not an error
    answers = await asyncio.gather(*(sqlite.insert_message_if_allowed(m) for m in sends))
    assert answers == [True] * 40 + [False, True, False]
    assert batches and max(batches) > 1 and sum(batches) + 1 >= len(sends)  # the first may go alone
    stored = {m.content for m in await sqlite.list_messages(chat.id, limit=100)}
    assert stored == {f"m{i}" for i in range(40)} | {"same id twice"}


async def test_a_failed_batch_fails_its_senders_and_the_next_batch_works(sqlite: SqliteStore) -> None:
    alice, bob = await users(sqlite, "Alice", "Bob")
    chat = await group(sqlite, alice, bob)
    many = sqlite._insert_checked_many
    calls = 0

    async def failing_once(messages: list[Any]) -> list[bool]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        return await many(messages)

    sqlite._insert_checked_many = failing_once  # type: ignore[method-assign]
    first = [a_message(chat.id, alice.id, f"lost {i}") for i in range(5)]
    answers = await asyncio.gather(*(sqlite.insert_message_if_allowed(m) for m in first), return_exceptions=True)
    failed = [a for a in answers if isinstance(a, OSError)]
    assert failed and all(a is True or isinstance(a, OSError) for a in answers)
    kept = await sqlite.count_messages(chat.id)
    assert kept == answers.count(True)  # nothing the failed transaction held was stored
    more = [a_message(chat.id, bob.id, f"kept {i}") for i in range(5)]
    assert await asyncio.gather(*(sqlite.insert_message_if_allowed(m) for m in more)) == [True] * 5


async def test_group_commit_answers_in_order_and_survives_a_sender_leaving() -> None:
    seen: list[list[int]] = []
    release = asyncio.Event()

    async def one(item: int) -> bool:
        await release.wait()
        return item % 2 == 0

    async def many(items: list[int]) -> list[bool]:
        seen.append(items)
        return [item % 2 == 0 for item in items]

    commit: GroupCommit[int] = GroupCommit(one, many, max_batch=3)
    first = asyncio.ensure_future(commit.submit(0))  # goes alone, and waits
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(commit.submit(i)) for i in range(1, 8)]
    await asyncio.sleep(0)  # all seven are queued behind the first
    waiting[0].cancel()  # item 1's sender goes away: the others are still answered
    release.set()
    assert await first is True
    results = await asyncio.gather(*waiting[1:])
    assert results == [i % 2 == 0 for i in range(2, 8)]
    assert seen == [[1, 2, 3], [4, 5, 6]]  # batches of at most 3; the last one, alone, took `one`
    await commit.close()
