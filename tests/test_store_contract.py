"""One contract for every store backend: each method of `models/store/base.py`, as its docstring promises.

Runs on SQLite, on `MongoStore` over FerretDB (a MongoDB wire-protocol server on
SQLite, always), and on a real MongoDB when `WHATSCHAT_TEST_MONGODB_URL` is set
(see `tests/store_backends.py`).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.clock import iso, new_id
from models.documents import Call, CallParticipant, Chat, Member, Message, Session, Upload, User
from models.store.base import ConstraintViolation, DuplicateKey, Store, StoreUnavailable
from models.store.sqlite_schema import MIGRATIONS
from tests import store_backends
from tests.store_backends import MONGO_BACKENDS, SQLITE, Backend

backend, store = store_backends.backend, store_backends.store  # the fixtures, once per backend
_BASE = datetime(2030, 1, 1, tzinfo=UTC)


def at(seconds: float) -> str:
    """A timestamp `seconds` after a fixed base: later arguments sort later."""
    return iso(_BASE + timedelta(seconds=seconds))


def a_user(name: str, **extra: Any) -> User:
    return User(
        id=new_id(),
        email=extra.pop("email", f"{name.lower()}@example.com"),
        username=name,
        password_hash="hash",
        created_at=at(0),
        updated_at=at(0),
        **extra,
    )


def a_chat(creator: str, kind: str = "group", pair: tuple[str, str] | None = None, **extra: Any) -> Chat:
    return Chat(
        id=new_id(),
        type=kind,  # type: ignore[arg-type]
        created_by=creator,
        created_at=extra.pop("created_at", at(0)),
        updated_at=at(0),
        last_activity=extra.pop("last_activity", at(0)),
        name=None if pair else extra.pop("name", "crew"),
        pair_key=":".join(sorted(pair)) if pair else None,
        **extra,
    )


def a_member(chat_id: str, user_id: str, role: str = "member", joined: float = 0, **extra: Any) -> Member:
    return Member(chat_id=chat_id, user_id=user_id, role=role, joined_at=at(joined), **extra)  # type: ignore[arg-type]


def a_message(chat_id: str, sender_id: str, content: str = "hi", when: float = 1, **extra: Any) -> Message:
    return Message(
        id=new_id(),
        chat_id=chat_id,
        sender_id=sender_id,
        content=content,
        type="text",
        created_at=at(when),
        updated_at=at(when),
        **extra,
    )


async def users(store: Store, *names: str) -> list[User]:
    made = [a_user(name) for name in names]
    for user in made:
        await store.insert_user(user)
    return made


async def group(store: Store, owner: User, *others: User, **extra: Any) -> Chat:
    chat = a_chat(owner.id, **extra)
    members = [a_member(chat.id, owner.id, "admin", 0)]
    members += [a_member(chat.id, u.id, "member", n + 1) for n, u in enumerate(others)]
    await store.insert_chat(chat, members)
    return chat


async def send(store: Store, chat: Chat, sender: User, content: str = "hi", when: float = 1, **extra: Any) -> Message:
    message = a_message(chat.id, sender.id, content, when, **extra)
    await store.insert_message(message)
    return message


# lifecycle


async def test_ping_answers(store):
    await store.ping()


async def test_reopening_keeps_documents_and_unique_indexes(backend: Backend, store: Store):
    (alice,) = await users(store, "alice")
    await store.close()
    again = await backend.open()  # `open` again on the same storage: schema and indexes are idempotent
    assert await again.get_user(alice.id) == alice
    with pytest.raises(DuplicateKey) as caught:
        await again.insert_user(a_user("ALICE", email="other@example.com"))
    assert caught.value.field == "username"


# users


async def test_insert_and_get_a_user_round_trips_every_field(store):
    user = a_user("alice", phone="+100", avatar="/a.png", status="here", presence_setting="busy", role="admin")
    user.last_seen = at(5)
    await store.insert_user(user)
    assert await store.get_user(user.id) == user
    assert await store.get_user(new_id()) is None
    assert await store.count_users() == 1


async def test_a_taken_email_or_username_is_a_duplicate_key_naming_the_field(store):
    (alice,) = await users(store, "alice")
    with pytest.raises(DuplicateKey) as caught:
        await store.insert_user(a_user("alicia", email=alice.email))
    assert caught.value.field == "email"
    with pytest.raises(DuplicateKey) as caught:
        await store.insert_user(a_user("AlIcE", email="new@example.com"))  # usernames ignore case
    assert caught.value.field == "username"
    assert await store.count_users() == 1


async def test_get_users_and_by_email(store):
    alice, bob = await users(store, "alice", "bob")
    found = await store.get_users([alice.id, bob.id, alice.id, new_id()])
    assert found == {alice.id: alice, bob.id: bob}
    assert await store.get_users([]) == {}
    assert await store.get_user_by_email("bob@example.com") == bob
    assert await store.get_user_by_email("BOB@example.com") is None  # exact: the services lower-case emails
    assert await store.get_user_by_email("nobody@example.com") is None


async def test_update_user_returns_the_new_document_and_keeps_uniqueness(store):
    alice, bob = await users(store, "alice", "bob")
    changed = await store.update_user(alice.id, {"status": "busy", "phone": None, "updated_at": at(9)})
    assert changed is not None and changed.status == "busy" and changed.updated_at == at(9)
    assert await store.get_user(alice.id) == changed
    renamed = await store.update_user(alice.id, {"username": "Alice2"})
    assert renamed is not None and renamed.username == "Alice2"
    with pytest.raises(DuplicateKey) as caught:
        await store.update_user(bob.id, {"username": "ALICE2"})
    assert caught.value.field == "username"
    with pytest.raises(DuplicateKey) as caught:
        await store.update_user(bob.id, {"email": alice.email})
    assert caught.value.field == "email"
    assert (await store.get_user(bob.id)) == bob
    # the old name is free again, and the new one is taken in any case
    await store.insert_user(a_user("alice", email="third@example.com"))
    with pytest.raises(ValueError, match="no_such_field"):
        await store.update_user(bob.id, {"no_such_field": 1})
    assert await store.update_user(new_id(), {"status": "x"}) is None
    assert await store.update_user(bob.id, {}) == bob


async def test_delete_user(store):
    alice, bob = await users(store, "alice", "bob")
    assert await store.delete_user(alice.id) is True
    assert await store.delete_user(alice.id) is False
    assert await store.get_user(alice.id) is None
    assert await store.get_user(bob.id) == bob
    assert await store.count_users() == 1


async def test_search_users_is_a_case_insensitive_substring_by_username_with_pages(store):
    await users(store, "alice", "Alicia", "bob", "malina", "pct%name", "under_score")
    page = await store.search_users("ALI", 1, 2)
    assert [u.username for u in page.items] == ["alice", "Alicia"]
    assert (page.total, page.page, page.limit, page.pages) == (3, 1, 2, 2)
    page = await store.search_users("ali", 2, 2)
    assert [u.username for u in page.items] == ["malina"] and page.total == 3
    assert [u.username for u in (await store.search_users("BOB@EXAMPLE", 1, 10)).items] == ["bob"]  # emails too
    everyone = await store.search_users(None, 1, 10)
    assert everyone.total == 6
    assert [u.username for u in everyone.items] == ["alice", "Alicia", "bob", "malina", "pct%name", "under_score"]
    assert (await store.search_users("", 1, 3)).total == 6
    # pattern characters are literal text
    assert [u.username for u in (await store.search_users("%", 1, 10)).items] == ["pct%name"]
    assert [u.username for u in (await store.search_users("_", 1, 10)).items] == ["under_score"]
    assert (await store.search_users(".*", 1, 10)).total == 0
    assert (await store.search_users("a.i", 1, 10)).total == 0
    assert (await store.search_users("[a]", 1, 10)).total == 0
    assert (await store.search_users("ali", 9, 10)).items == []


async def test_a_display_name_is_stored_read_back_by_every_user_query_and_changeable(store):
    alice = a_user("alice", display_name="Alice A.")
    await store.insert_user(alice)
    (bob,) = await users(store, "bob")
    assert bob.display_name is None and await store.get_user(bob.id) == bob  # None: clients show the username
    assert await store.get_user(alice.id) == alice
    assert await store.get_users([alice.id, bob.id]) == {alice.id: alice, bob.id: bob}
    assert await store.get_user_by_email(alice.email) == alice
    assert (await store.search_users(None, 1, 10)).items == [alice, bob]
    named = await store.update_user(bob.id, {"display_name": "Bobby", "updated_at": at(3)})
    assert named is not None and named.display_name == "Bobby" and await store.get_user(bob.id) == named
    cleared = await store.update_user(bob.id, {"display_name": None, "updated_at": bob.updated_at})
    assert cleared == bob


async def test_search_users_matches_display_names_too_still_in_username_order(store):
    for name, shown in (("zed", "Quokka Fan"), ("amy", "the QUOKKA"), ("quinn", None), ("bob", "Bob (100%)")):
        await store.insert_user(a_user(name, display_name=shown))
    page = await store.search_users("quokka", 1, 10)
    assert [u.username for u in page.items] == ["amy", "zed"] and page.total == 2  # by username, not by the match
    assert [u.username for u in (await store.search_users("QU", 1, 10)).items] == ["amy", "quinn", "zed"]
    page = await store.search_users("qu", 2, 2)
    assert [u.username for u in page.items] == ["zed"] and page.total == 3
    assert [u.username for u in (await store.search_users("(100%)", 1, 10)).items] == ["bob"]  # literal text
    assert (await store.search_users("f.n", 1, 10)).total == 0
    assert (await store.search_users(None, 1, 10)).total == 4


async def test_search_users_without_emails_matches_names_and_usernames_only(store):
    await store.insert_user(a_user("carol", email="secretmailbox@example.com", display_name="Carol C."))
    await store.insert_user(a_user("secretfan", display_name=None))
    assert [u.username for u in (await store.search_users("secret", 1, 10)).items] == ["carol", "secretfan"]
    page = await store.search_users("secret", 1, 10, emails=False)
    assert [u.username for u in page.items] == ["secretfan"] and page.total == 1
    assert [u.username for u in (await store.search_users("carol c", 1, 10, emails=False)).items] == ["carol"]


# sessions


def a_session(user: User, **extra: Any) -> Session:
    return Session(id=new_id(), user_id=user.id, refresh_jti=new_id(), created_at=at(0), expires_at=at(100), **extra)


async def test_insert_and_get_a_session(store):
    (alice,) = await users(store, "alice")
    session = a_session(alice)
    await store.insert_session(session)
    assert await store.get_session(session.id) == session
    assert await store.get_session(new_id()) is None


async def test_rotate_refresh_swaps_once_and_never_after_revocation(store):
    (alice,) = await users(store, "alice")
    session = a_session(alice)
    await store.insert_session(session)
    old, new, newer = session.refresh_jti, new_id(), new_id()
    assert await store.rotate_refresh(session.id, old, new, at(200)) is True
    assert await store.rotate_refresh(session.id, old, newer, at(300)) is False  # the old id is spent
    stored = await store.get_session(session.id)
    assert stored is not None and (stored.refresh_jti, stored.expires_at) == (new, at(200))
    assert await store.rotate_refresh(new_id(), new, newer, at(300)) is False
    await store.revoke_session(session.id, at(50))
    assert await store.rotate_refresh(session.id, new, newer, at(300)) is False
    await store.revoke_session(session.id, at(60))  # a second revoke keeps the first time
    stored = await store.get_session(session.id)
    assert stored is not None and (stored.refresh_jti, stored.revoked_at) == (new, at(50))


async def test_revoke_user_sessions_keeps_one_and_returns_the_revoked(store):
    alice, bob = await users(store, "alice", "bob")
    keep, other, gone = a_session(alice), a_session(alice), a_session(alice)
    bobs = a_session(bob)
    for session in (keep, other, gone, bobs):
        await store.insert_session(session)
    await store.revoke_session(gone.id, at(1))
    assert await store.revoke_user_sessions(alice.id, at(2), keep=keep.id) == [other.id]
    assert (await store.get_session(keep.id)).revoked_at is None  # type: ignore[union-attr]
    assert (await store.get_session(other.id)).revoked_at == at(2)  # type: ignore[union-attr]
    assert (await store.get_session(gone.id)).revoked_at == at(1)  # type: ignore[union-attr]
    assert (await store.get_session(bobs.id)).revoked_at is None  # type: ignore[union-attr]
    assert await store.revoke_user_sessions(alice.id, at(3)) == [keep.id]
    assert await store.revoke_user_sessions(alice.id, at(4)) == []


# password reset


async def test_a_reset_token_is_consumed_once_and_only_before_it_expires(store):
    alice, bob = await users(store, "alice", "bob")
    await store.insert_reset_token("h1", alice.id, at(100))
    await store.insert_reset_token("h2", bob.id, at(100))
    assert await store.consume_reset_token("h1", at(50)) == alice.id
    assert await store.consume_reset_token("h1", at(51)) is None
    assert await store.consume_reset_token("h2", at(100)) is None  # expired (at the instant, too)
    assert await store.consume_reset_token("h2", at(101)) is None
    assert await store.consume_reset_token("unknown", at(1)) is None


# blocks


async def test_blocks_are_directed_idempotent_and_removable(store):
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    await store.set_block(alice.id, bob.id, at(1), True)
    await store.set_block(alice.id, bob.id, at(2), True)
    await store.set_block(alice.id, carol.id, at(3), True)
    await store.set_block(carol.id, bob.id, at(4), True)
    assert await store.is_blocked(alice.id, bob.id) is True
    assert await store.is_blocked(bob.id, alice.id) is False
    assert sorted(await store.blocked_ids(alice.id)) == sorted([bob.id, carol.id])
    assert await store.blocked_ids(bob.id) == []
    assert sorted(await store.blocked_ids_of(bob.id, [alice.id, carol.id, new_id()])) == sorted([alice.id, carol.id])
    assert await store.blocked_ids_of(bob.id, []) == []
    await store.set_block(alice.id, bob.id, at(5), False)
    await store.set_block(alice.id, bob.id, at(6), False)
    assert await store.is_blocked(alice.id, bob.id) is False
    assert await store.blocked_ids_of(bob.id, [alice.id, carol.id]) == [carol.id]


# chats and members


async def test_insert_and_get_a_chat_with_its_members(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob, only_admins_add=True, description="about")
    assert await store.get_chat(chat.id) == chat
    stored = await store.get_chat(chat.id)
    assert stored is not None and stored.only_admins_add is True and stored.last_message_id is None
    assert await store.get_chat(new_id()) is None
    members = await store.list_members(chat.id)
    assert [(m.user_id, m.role) for m in members] == [(alice.id, "admin"), (bob.id, "member")]
    assert await store.get_member(chat.id, bob.id) == a_member(chat.id, bob.id, "member", 1)
    assert await store.get_member(chat.id, new_id()) is None


async def test_one_private_chat_per_pair(store):
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    first = a_chat(alice.id, "private", (alice.id, bob.id))
    await store.insert_chat(first, [a_member(first.id, alice.id), a_member(first.id, bob.id)])
    second = a_chat(bob.id, "private", (bob.id, alice.id))
    with pytest.raises(DuplicateKey) as caught:
        await store.insert_chat(second, [a_member(second.id, bob.id), a_member(second.id, alice.id)])
    assert caught.value.field == "pair_key"
    assert await store.get_chat(second.id) is None
    assert await store.get_member(second.id, bob.id) is None
    assert await store.get_private_chat(first.pair_key) == first  # type: ignore[arg-type]
    assert await store.get_private_chat(f"{alice.id}:{carol.id}") is None
    # groups have no pair key: any number of them
    await group(store, alice, bob)
    await group(store, alice, bob)
    assert sorted(await store.user_chat_ids(bob.id)) == sorted(await store.user_chat_ids(alice.id))
    assert len(await store.user_chat_ids(alice.id)) == 3


async def test_update_chat(store):
    (alice,) = await users(store, "alice")
    chat = await group(store, alice)
    changed = await store.update_chat(chat.id, {"name": "renamed", "only_admins_add": 1, "updated_at": at(7)})
    assert changed is not None
    assert (changed.name, changed.only_admins_add, changed.updated_at) == ("renamed", True, at(7))
    assert await store.get_chat(chat.id) == changed
    assert await store.update_chat(new_id(), {"name": "x"}) is None


async def test_delete_chat_removes_its_members_and_messages(store):
    alice, bob = await users(store, "alice", "bob")
    chat, kept = await group(store, alice, bob), await group(store, alice, bob)
    gone = await send(store, chat, alice)
    stays = await send(store, kept, alice)
    await store.delete_chat(chat.id)
    assert await store.get_chat(chat.id) is None
    assert await store.list_members(chat.id) == []
    assert await store.get_member(chat.id, alice.id) is None
    assert await store.get_message(gone.id) is None
    assert await store.user_chat_ids(alice.id) == [kept.id]
    assert await store.get_message(stays.id) == stays
    assert len(await store.list_members(kept.id)) == 2


async def test_add_members_leaves_existing_ones_as_they_are(store):
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    chat = await group(store, alice, bob)
    await store.add_members([a_member(chat.id, alice.id, "member", 5), a_member(chat.id, carol.id, "member", 5)])
    await store.add_members([])
    members = await store.list_members(chat.id)
    assert [(m.user_id, m.role, m.joined_at) for m in members] == [
        (alice.id, "admin", at(0)),
        (bob.id, "member", at(1)),
        (carol.id, "member", at(5)),
    ]


async def test_members_are_listed_in_join_order(store):
    alice, bob, carol, dave = await users(store, "alice", "bob", "carol", "dave")
    chat = a_chat(alice.id)
    joined = [a_member(chat.id, dave.id, joined=3), a_member(chat.id, alice.id, "admin", 0)]
    joined += [a_member(chat.id, carol.id, joined=2), a_member(chat.id, bob.id, joined=2)]
    await store.insert_chat(chat, joined)
    same_time = sorted([bob.id, carol.id])  # the same instant: by user id
    assert [m.user_id for m in await store.list_members(chat.id)] == [alice.id, *same_time, dave.id]


async def test_remove_and_update_a_member(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob)
    muted = await store.update_member(chat.id, bob.id, {"muted": 1})
    assert muted is not None and muted.muted is True and muted.archived is False
    archived = await store.update_member(chat.id, bob.id, {"archived": True, "role": "admin"})
    assert archived is not None and (archived.muted, archived.archived, archived.role) == (True, True, "admin")
    assert await store.get_member(chat.id, bob.id) == archived
    assert await store.update_member(chat.id, new_id(), {"muted": 1}) is None
    assert await store.remove_member(chat.id, bob.id) is True
    assert await store.remove_member(chat.id, bob.id) is False
    assert [m.user_id for m in await store.list_members(chat.id)] == [alice.id]


async def test_advance_mark_only_moves_forward(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob)
    first, second, third = [m async for m in _messages(store, chat, alice, 3)]
    assert await store.advance_mark(chat.id, bob.id, "last_read_id", second.id) is True
    assert await store.advance_mark(chat.id, bob.id, "last_read_id", first.id) is False
    assert await store.advance_mark(chat.id, bob.id, "last_read_id", second.id) is False
    assert (await store.get_member(chat.id, bob.id)).last_read_id == second.id  # type: ignore[union-attr]
    assert await store.advance_mark(chat.id, bob.id, "last_delivered_id", third.id) is True
    assert await store.advance_mark(chat.id, bob.id, "last_read_id", third.id) is True
    member = await store.get_member(chat.id, bob.id)
    assert member is not None and (member.last_read_id, member.last_delivered_id) == (third.id, third.id)
    assert await store.advance_mark(chat.id, new_id(), "last_read_id", third.id) is False
    with pytest.raises(ValueError, match="role"):
        await store.advance_mark(chat.id, bob.id, "role", third.id)


async def test_advance_delivered_says_whether_the_mark_moved_and_whether_this_member_was_the_first(store):
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    chat = await group(store, alice, bob, carol)
    first, second = [m async for m in _messages(store, chat, alice, 2)]
    assert await store.advance_delivered(chat.id, bob.id, first.id, alice.id) == (True, True)
    assert await store.advance_delivered(chat.id, carol.id, first.id, alice.id) == (True, False)  # bob had it
    assert await store.advance_delivered(chat.id, carol.id, first.id, alice.id) == (False, False)  # no move
    assert await store.advance_delivered(chat.id, carol.id, second.id, alice.id) == (True, True)
    assert await store.advance_delivered(chat.id, bob.id, second.id, alice.id) == (True, False)
    assert await store.advance_mark(chat.id, bob.id, "last_delivered_id", second.id) is False  # the same mark
    # the sender's own mark never makes another member's delivery second
    third = await send(store, chat, alice, "third", when=10)
    assert await store.advance_mark(chat.id, alice.id, "last_delivered_id", third.id) is True
    assert await store.advance_delivered(chat.id, bob.id, third.id, alice.id) == (True, True)
    assert await store.advance_delivered(chat.id, new_id(), third.id, alice.id) == (False, False)  # not a member


async def _messages(store: Store, chat: Chat, sender: User, n: int, start: float = 1) -> Any:
    for i in range(n):
        yield await send(store, chat, sender, f"message {i}", when=start + i)


async def test_user_chats_latest_activity_first_with_filters_and_total(store):
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    quiet = await group(store, alice, bob, name="quiet", last_activity=at(1))
    busy = await group(store, alice, carol, name="busy", last_activity=at(2))
    private = a_chat(alice.id, "private", (alice.id, bob.id), last_activity=at(3))
    await store.insert_chat(private, [a_member(private.id, alice.id), a_member(private.id, bob.id)])
    archived = await group(store, alice, name="archived", last_activity=at(4))
    not_mine = await group(store, bob, name="not mine", last_activity=at(9))
    await send(store, busy, carol, when=10)
    await store.update_member(archived.id, alice.id, {"archived": 1})

    pairs, total = await store.user_chats(alice.id, None, None, 1, 10)
    assert [c.id for c, _ in pairs] == [busy.id, archived.id, private.id, quiet.id] and total == 4
    assert all(m.user_id == alice.id and m.chat_id == c.id for c, m in pairs)
    assert pairs[0][0].last_activity == at(10) and pairs[0][0].message_count == 1
    assert pairs[0][1].role == "admin"

    pairs, total = await store.user_chats(alice.id, False, None, 2, 2)
    assert [c.id for c, _ in pairs] == [quiet.id] and total == 3
    pairs, total = await store.user_chats(alice.id, True, None, 1, 10)
    assert [c.id for c, _ in pairs] == [archived.id] and pairs[0][1].archived is True and total == 1
    pairs, total = await store.user_chats(alice.id, None, "private", 1, 10)
    assert [c.id for c, _ in pairs] == [private.id] and total == 1
    pairs, total = await store.user_chats(alice.id, False, "group", 1, 10)
    assert [c.id for c, _ in pairs] == [busy.id, quiet.id] and total == 2
    assert await store.user_chats(new_id(), None, None, 1, 10) == ([], 0)
    assert not_mine.id not in await store.user_chat_ids(alice.id)


async def test_user_chats_break_activity_ties_by_the_newest_message_then_id(store):
    (alice,) = await users(store, "alice")
    older, newer = await group(store, alice, last_activity=at(1)), await group(store, alice, last_activity=at(1))
    pairs, _ = await store.user_chats(alice.id, None, None, 1, 10)
    assert [c.id for c, _ in pairs] == [newer.id, older.id]
    await send(store, older, alice, when=5)
    await send(store, newer, alice, when=5)
    await send(store, older, alice, when=5)  # same instant: the chat whose last message is newer comes first
    pairs, _ = await store.user_chats(alice.id, None, None, 1, 10)
    assert [c.id for c, _ in pairs] == [older.id, newer.id]


async def test_a_groups_owner_is_stored_read_back_by_every_chat_query_and_changeable(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob, owner_id=alice.id)
    private = a_chat(alice.id, "private", (alice.id, bob.id))
    await store.insert_chat(private, [a_member(private.id, alice.id), a_member(private.id, bob.id)])
    assert private.owner_id is None and await store.get_private_chat(private.pair_key) == private  # type: ignore[arg-type]
    assert chat.owner_id == alice.id and await store.get_chat(chat.id) == chat
    pairs, _ = await store.user_chats(bob.id, None, "group", 1, 10)
    assert [c for c, _ in pairs] == [chat]
    handed = await store.update_chat(chat.id, {"owner_id": bob.id, "updated_at": at(3)})
    assert handed is not None and (handed.owner_id, handed.created_by) == (bob.id, alice.id)
    assert await store.get_chat(chat.id) == handed
    pairs, _ = await store.user_chats(alice.id, None, "group", 1, 10, order_by="created_at")
    assert [c for c, _ in pairs] == [handed]


@pytest.mark.parametrize("backend", MONGO_BACKENDS, indirect=True)
async def test_documents_stored_before_display_names_and_owners_read_them_as_none(store):
    """MongoDB documents simply gain the fields: an older one without them reads as None (the domain falls back)."""
    (alice,) = await users(store, "alice")
    chat = await group(store, alice, owner_id=alice.id)
    await store.update_user(alice.id, {"display_name": "Alice"})
    await store.users.update_one({"_id": alice.id}, {"$unset": {"display_name": ""}})
    await store.chats.update_one({"_id": chat.id}, {"$unset": {"owner_id": ""}})
    assert "display_name" not in await store.users.find_one({"_id": alice.id})
    assert "owner_id" not in await store.chats.find_one({"_id": chat.id})
    assert await store.get_user(alice.id) == alice and alice.display_name is None
    assert await store.get_chat(chat.id) == dataclasses.replace(chat, owner_id=None)
    pairs, _ = await store.user_chats(alice.id, None, None, 1, 10)
    assert [c.owner_id for c, _ in pairs] == [None]


@pytest.mark.parametrize("backend", [SQLITE], indirect=True)
async def test_migration_6_gives_no_display_names_and_makes_each_groups_creator_its_owner(backend: Backend):
    """A database of version 5: its users show their usernames, its groups are owned by their creators."""
    old = sqlite3.connect(backend.path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        old.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    alice = a_user("alice")
    old.execute(
        "INSERT INTO users (id, email, username, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        (alice.id, alice.email, alice.username, alice.password_hash, alice.created_at, alice.updated_at),
    )
    crew, private = a_chat("creator"), a_chat("creator", "private", ("creator", "other"))
    for chat in (crew, private):
        old.execute(
            "INSERT INTO chats (id, type, name, pair_key, created_by, last_activity, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (chat.id, chat.type, chat.name, chat.pair_key, chat.created_by, at(0), at(0), at(0)),
        )
    old.close()
    store = await backend.open()
    assert await store.schema_version() == len(MIGRATIONS) >= 6  # type: ignore[attr-defined]
    assert await store.get_user(alice.id) == alice and alice.display_name is None
    assert await store.get_chat(crew.id) == dataclasses.replace(crew, owner_id="creator")
    assert await store.get_chat(private.id) == private and private.owner_id is None


async def test_user_chats_by_creation_or_earliest_first_with_ties_broken_consistently(store):
    alice, bob = await users(store, "alice", "bob")
    first = await group(store, alice, created_at=at(1), last_activity=at(7))
    tied = [await group(store, alice, created_at=at(2), last_activity=at(5)) for _ in range(2)]
    last = await group(store, alice, bob, created_at=at(3), last_activity=at(6))
    await group(store, bob, created_at=at(0))  # not alice's
    low, high = sorted(tied, key=lambda c: c.id)

    async def order(**kwargs: Any) -> list[str]:
        pairs, total = await store.user_chats(alice.id, None, None, 1, 10, **kwargs)
        assert total == 4
        return [c.id for c, _ in pairs]

    by_activity = [first.id, last.id, high.id, low.id]  # the tie: the newer last message, here the chat id
    assert await order() == by_activity == await order(order_by="last_activity", descending=True)
    assert await order(descending=False) == by_activity[::-1]
    by_creation = [last.id, high.id, low.id, first.id]
    assert await order(order_by="created_at") == by_creation
    assert await order(order_by="created_at", descending=False) == by_creation[::-1]
    pages = [await store.user_chats(alice.id, None, "group", n, 2, "created_at", False) for n in (1, 2, 3)]
    assert [c.id for pairs, _ in pages for c, _ in pairs] == by_creation[::-1]  # pages neither overlap nor skip
    assert [total for _, total in pages] == [4, 4, 4]
    for wrong in ("name", "created_at DESC", "last_activity; DROP TABLE chats", ""):
        with pytest.raises(ValueError, match="order_by"):
            await store.user_chats(alice.id, None, None, 1, 10, order_by=wrong)


async def test_user_chat_ids_and_shared_chat_user_ids(store):
    alice, bob, carol, dave = await users(store, "alice", "bob", "carol", "dave")
    one, two = await group(store, alice, bob), await group(store, alice, bob, carol)
    await group(store, dave)
    assert sorted(await store.user_chat_ids(alice.id)) == sorted([one.id, two.id])
    assert await store.user_chat_ids(dave.id) != []
    assert sorted(await store.shared_chat_user_ids(alice.id)) == sorted([bob.id, carol.id])
    assert sorted(await store.shared_chat_user_ids(carol.id)) == sorted([alice.id, bob.id])
    assert await store.shared_chat_user_ids(dave.id) == []
    assert await store.shared_chat_user_ids(new_id()) == []


# messages


async def test_insert_message_makes_it_the_chats_last(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob, last_activity=at(0))
    first = await send(store, chat, alice, when=5)
    second = await send(store, chat, bob, when=6)
    stored = await store.get_chat(chat.id)
    assert stored is not None
    assert (stored.last_message_id, stored.last_activity, stored.message_count) == (second.id, at(6), 2)
    assert await store.get_message(first.id) == first
    assert await store.count_messages(chat.id) == 2


async def test_the_chats_last_message_never_moves_back_to_an_older_one(store):
    """A send takes its id before its awaited checks, so an older id can commit after a newer one.

    Whichever lands last, the chat's last message and activity stay the newest (ids
    and times sort together), on the plain insert and on the send path's alike.
    """
    alice, bob = await users(store, "alice", "bob")
    for insert in (store.insert_message, store.insert_message_if_allowed):
        chat = await group(store, alice, bob, last_activity=at(0))
        reply = a_message(chat.id, alice.id, "a reply, checked first", when=5)
        newer = a_message(chat.id, bob.id, "sent meanwhile", when=6)
        await insert(newer)
        await insert(reply)
        stored = await store.get_chat(chat.id)
        assert stored is not None
        assert (stored.last_message_id, stored.last_activity, stored.message_count) == (newer.id, at(6), 2), insert
        pairs, _ = await store.user_chats(alice.id, None, None, 1, 1)
        assert pairs[0][0].last_message_id == newer.id, insert


async def test_a_client_id_is_unique_per_sender(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob)
    sent = await send(store, chat, alice, client_id="c-1")
    with pytest.raises(DuplicateKey) as caught:
        await send(store, chat, alice, "again", client_id="c-1")
    assert caught.value.field == "client_id"
    await send(store, chat, bob, client_id="c-1")  # another sender's own
    await send(store, chat, alice)  # no client id: any number
    await send(store, chat, alice)
    assert await store.get_message_by_client_id(alice.id, "c-1") == sent
    assert await store.get_message_by_client_id(alice.id, "c-2") is None
    stored = await store.get_chat(chat.id)
    assert stored is not None and stored.message_count == 4  # the refused one counts nowhere


async def test_get_messages_and_metadata_round_trip(store):
    (alice,) = await users(store, "alice")
    chat = await group(store, alice)
    metadata = {"$where": "1", "a.b": [1, {"c": None}], "ok": True}  # a user's keys, kept as they are
    one = await send(store, chat, alice, metadata=metadata, reply_to=None)
    two = await send(store, chat, alice, reply_to=one.id)
    assert await store.get_message(one.id) == one
    assert (await store.get_message(one.id)).metadata == metadata  # type: ignore[union-attr]
    assert await store.get_messages([one.id, two.id, "", one.id, new_id()]) == {one.id: one, two.id: two}
    assert await store.get_messages([]) == {}
    assert await store.get_message(new_id()) is None


async def test_update_message_edits_metadata_and_tombstones(store):
    (alice,) = await users(store, "alice")
    chat = await group(store, alice)
    message = await send(store, chat, alice, "draft", metadata={"k": 1})
    edited = await store.update_message(
        message.id, {"content": "final", "metadata": {"k": 2, "n": [1]}, "edited_at": at(3), "updated_at": at(3)}
    )
    assert edited is not None
    assert (edited.content, edited.metadata, edited.edited_at, edited.updated_at) == (
        "final",
        {"k": 2, "n": [1]},
        at(3),
        at(3),
    )
    deleted = await store.update_message(
        message.id, {"content": "", "metadata": None, "deleted": 1, "updated_at": at(4)}
    )
    assert deleted is not None and (deleted.content, deleted.metadata, deleted.deleted) == ("", None, True)
    assert await store.get_message(message.id) == deleted
    assert await store.update_message(new_id(), {"content": "x"}) is None


async def test_edit_message_keeps_the_newest_edit_whatever_order_edits_commit_in(store):
    """Two edits of one message racing on two processes may commit in either order; both backends
    keep the one made last, so the store agrees with clients that keep the latest `editedAt`."""
    (alice,) = await users(store, "alice")
    chat = await group(store, alice)
    message = await send(store, chat, alice, "draft")

    def edit(content: str, when: float) -> dict[str, Any]:
        return {"content": content, "edited_at": at(when), "updated_at": at(when)}

    assert await store.edit_message(message.id, edit("newer", 5)) is True
    assert await store.edit_message(message.id, edit("older", 4)) is False  # committed late, made early
    stored = await store.get_message(message.id)
    assert stored is not None and (stored.content, stored.edited_at) == ("newer", at(5))
    assert await store.edit_message(message.id, edit("same moment", 5)) is True  # a tie: the later commit wins
    assert await store.edit_message(message.id, edit("newest", 6)) is True
    await store.update_message(message.id, {"content": "", "deleted": 1, "updated_at": at(7)})
    assert await store.edit_message(message.id, edit("after the delete", 8)) is False
    stored = await store.get_message(message.id)
    assert stored is not None and (stored.content, stored.deleted) == ("", True)
    assert await store.edit_message(new_id(), edit("nowhere", 9)) is False


async def test_tombstone_message_is_won_by_exactly_one_delete(store):
    (alice,) = await users(store, "alice")
    chat = await group(store, alice)
    message = await send(store, chat, alice, "secret", metadata={"k": 1})
    assert await store.tombstone_message(message.id, at(5)) is True
    assert await store.tombstone_message(message.id, at(6)) is False  # the second of two racing deletes
    stored = await store.get_message(message.id)
    assert stored is not None
    assert (stored.content, stored.metadata, stored.deleted, stored.updated_at) == ("", None, True, at(5))
    assert await store.tombstone_message(new_id(), at(7)) is False


async def test_list_messages_pages_newest_first_by_offset_and_cursors(store):
    (alice,) = await users(store, "alice")
    chat, other = await group(store, alice), await group(store, alice)
    ids = [m.id async for m in _messages(store, chat, alice, 10)]
    await send(store, other, alice, when=20)

    async def page(**kwargs: Any) -> list[str]:
        return [m.id for m in await store.list_messages(chat.id, **kwargs)]

    assert await page(limit=3) == ids[:-4:-1]
    assert await page(limit=2, offset=3) == [ids[6], ids[5]]
    assert await page(limit=3, before=ids[5]) == [ids[4], ids[3], ids[2]]
    assert await page(limit=3, before=ids[1]) == [ids[0]]
    assert await page(limit=3, after=ids[2]) == [ids[5], ids[4], ids[3]]  # right after the cursor, newest first
    assert await page(limit=3, after=ids[8]) == [ids[9]]
    assert await page(limit=10, after=ids[2], before=ids[6]) == [ids[5], ids[4], ids[3]]
    assert await page(limit=100) == ids[::-1]
    assert await store.list_messages(new_id(), limit=10) == []


async def test_search_messages_is_a_literal_case_insensitive_substring_without_tombstones(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob)
    hello = await send(store, chat, alice, "Hello there", when=1)
    await send(store, chat, bob, "goodbye", when=2)
    hello_again = await send(store, chat, bob, "say HELLO", when=3)
    gone = await send(store, chat, alice, "hello, deleted", when=4)
    literal = await send(store, chat, alice, "100% sure (.*)", when=5)
    await store.update_message(gone.id, {"content": "hello", "deleted": 1, "updated_at": at(9)})

    found = await store.list_messages(chat.id, limit=10, search="hElLo")
    assert [m.id for m in found] == [hello_again.id, hello.id]
    assert [m.id for m in await store.list_messages(chat.id, limit=1, offset=1, search="hello")] == [hello.id]
    assert [m.id for m in await store.list_messages(chat.id, limit=10, search="% sure")] == [literal.id]
    assert [m.id for m in await store.list_messages(chat.id, limit=10, search="(.*)")] == [literal.id]
    assert await store.list_messages(chat.id, limit=10, search="h.llo") == []
    assert [m.id for m in await store.list_messages(chat.id, limit=10, search="hello", before=hello_again.id)] == [
        hello.id
    ]
    assert await store.count_messages(chat.id, "HELLO") == 2
    assert await store.count_messages(chat.id, "h.llo") == 0
    assert await store.count_messages(chat.id, ".*") == 1  # the one that says it
    assert await store.count_messages(chat.id) == 5  # every message, tombstones too
    assert await store.count_messages(chat.id, "") == 5
    assert await store.count_messages(new_id()) == 0


async def test_search_follows_edits_deletes_and_removed_chats_at_once(store):
    alice, bob = await users(store, "alice", "bob")
    chat, other = await group(store, alice, bob), await group(store, alice, bob)
    draft = await send(store, chat, alice, "meet at the Lighthouse", when=1)
    kept = await send(store, chat, bob, "the lighthouse is closed", when=2)
    await send(store, other, alice, "lighthouse in another chat", when=3)

    async def found(term: str, chat_id: str = chat.id) -> tuple[list[str], int]:
        page = await store.list_messages(chat_id, limit=10, search=term)
        return [m.id for m in page], await store.count_messages(chat_id, term)

    assert await found("LIGHTHOUSE") == ([kept.id, draft.id], 2)  # only this chat's
    await store.update_message(draft.id, {"content": "meet at the pier", "edited_at": at(5), "updated_at": at(5)})
    assert await found("lighthouse") == ([kept.id], 1)  # the old words are gone with the edit
    assert await found("the PIER") == ([draft.id], 1)  # and the new ones are there at once
    await store.update_message(kept.id, {"content": "", "metadata": None, "deleted": 1, "updated_at": at(6)})
    assert await found("lighthouse") == ([], 0)
    assert await found("light", other.id) == ([(await store.list_messages(other.id, limit=1))[0].id], 1)
    await store.delete_chat(other.id)
    assert await found("lighthouse", other.id) == ([], 0)
    assert await store.count_messages(chat.id) == 2  # the tombstone still counts as a message


async def test_search_pages_cursors_and_short_or_odd_terms(store):
    (alice,) = await users(store, "alice")
    chat = await group(store, alice)
    texts = [
        "Quokka one",
        "no match",
        'say "quokka" twice: QUOKKA',
        "quokka* AND NEAR(x) ^quokka",
        "ab",
        "Ünïcode Ωmega",
        "tab\there",
        "quokkas",
    ]
    sent = [await send(store, chat, alice, text, when=n + 1) for n, text in enumerate(texts)]
    ids = [m.id for m in sent]

    async def page(term: str, **kwargs: Any) -> list[str]:
        return [m.id for m in await store.list_messages(chat.id, search=term, **{"limit": 10, **kwargs})]

    matches = [ids[7], ids[3], ids[2], ids[0]]
    assert await page("quokka") == matches and await store.count_messages(chat.id, "quokka") == 4
    assert await page("quokka", limit=2) == matches[:2]
    assert await page("quokka", limit=2, offset=2) == matches[2:]
    assert await page("quokka", before=ids[3]) == [ids[2], ids[0]]
    assert await page("quokka", after=ids[0], limit=2) == [ids[3], ids[2]]  # right after the cursor, newest first
    assert await page("quokka", after=ids[0], before=ids[7]) == [ids[3], ids[2]]
    assert await store.count_messages(chat.id, "quokka") == 4  # the total ignores cursors
    assert await page('"quokka"') == [ids[2]]  # quotes, stars and words of a query language are plain text
    assert await page("quokka*") == [ids[3]]
    assert await page("AND NEAR(") == [ids[3]]
    assert await page("aB") == [ids[6], ids[4]] and await store.count_messages(chat.id, "aB") == 2  # shorter than 3
    assert await page("o") == [ids[7], ids[5], ids[3], ids[2], ids[1], ids[0]]
    assert await page("Ünïcode Ω") == [ids[5]]  # any character, matched as it is
    assert await page("\there") == [ids[6]]
    assert await page("quokkass") == [] and await store.count_messages(chat.id, "quokkass") == 0


async def test_list_messages_live_only_leaves_tombstones_out_and_oldest_first_pages_from_the_start(store):
    (alice,) = await users(store, "alice")
    chat, other = await group(store, alice), await group(store, alice)
    ids = [m.id async for m in _messages(store, chat, alice, 6)]
    await send(store, other, alice, "message elsewhere", when=20)
    for gone in (ids[1], ids[4]):
        assert await store.tombstone_message(gone, at(30))
    live = [ids[0], ids[2], ids[3], ids[5]]

    async def page(**kwargs: Any) -> list[str]:
        return [m.id for m in await store.list_messages(chat.id, **kwargs)]

    assert await page(limit=10) == ids[::-1]  # by default tombstones are listed, as before
    assert await page(limit=10, live_only=True) == live[::-1]
    assert await page(limit=2, offset=1, live_only=True) == [ids[3], ids[2]]
    assert await page(limit=3, before=ids[5], live_only=True) == [ids[3], ids[2], ids[0]]
    assert await page(limit=2, after=ids[0], live_only=True) == [ids[3], ids[2]]
    assert await page(limit=4, oldest_first=True) == ids[:4]
    assert await page(limit=4, offset=4, oldest_first=True) == ids[4:]
    assert await page(limit=3, live_only=True, oldest_first=True) == live[:3]
    assert await page(limit=3, offset=3, live_only=True, oldest_first=True) == live[3:]
    assert await page(limit=10, search="MESSAGE", oldest_first=True) == live  # on the search index
    assert await page(limit=2, offset=1, search="ge", oldest_first=True) == live[1:3]  # too short for it
    assert await page(limit=10, search="message", live_only=True) == live[::-1]
    assert await store.list_messages(new_id(), limit=10, oldest_first=True) == []
    for cursor in ({"before": ids[3]}, {"after": ids[1]}, {"before": ids[4], "after": ids[1]}):
        with pytest.raises(ValueError, match="oldest_first"):
            await store.list_messages(chat.id, limit=10, oldest_first=True, **cursor)


async def test_count_messages_live_only_counts_the_messages_that_are_not_deleted(store):
    alice, bob = await users(store, "alice", "bob")
    chat, other = await group(store, alice, bob), await group(store, alice, bob)
    sent = [m async for m in _messages(store, chat, alice, 5)]
    await send(store, other, bob, "message elsewhere", when=9)
    await store.tombstone_message(sent[0].id, at(10))
    await store.update_message(sent[3].id, {"content": "", "deleted": 1, "updated_at": at(11)})
    assert await store.count_messages(chat.id) == 5  # the chat's stored count, tombstones included, as before
    assert await store.count_messages(chat.id, live_only=True) == 3
    assert await store.count_messages(chat.id, "", live_only=True) == 3
    assert (
        await store.count_messages(chat.id, "message", live_only=True)
        == 3
        == await store.count_messages(chat.id, "message")
    )  # a search never counted tombstones
    assert await store.count_messages(chat.id, "4", live_only=True) == 1
    assert await store.count_messages(other.id, live_only=True) == 1
    assert await store.count_messages(new_id(), live_only=True) == 0
    assert len(await store.list_messages(chat.id, limit=10, live_only=True)) == 3  # the total of that listing


async def test_count_unread_counts_others_newer_messages_without_tombstones(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob)
    first = await send(store, chat, bob, when=1)
    await send(store, chat, alice, when=2)
    third = await send(store, chat, bob, when=3)
    await send(store, chat, bob, when=4)
    deleted = await send(store, chat, bob, when=5)
    await store.update_message(deleted.id, {"deleted": 1, "content": "", "updated_at": at(6)})
    assert await store.count_unread(chat.id, alice.id, None) == 3
    assert await store.count_unread(chat.id, alice.id, first.id) == 2
    assert await store.count_unread(chat.id, alice.id, third.id) == 1
    assert await store.count_unread(chat.id, bob.id, None) == 1
    assert await store.count_unread(chat.id, alice.id, deleted.id) == 0


async def test_messages_after_spans_chats_oldest_first(store):
    (alice,) = await users(store, "alice")
    one, two, three = await group(store, alice), await group(store, alice), await group(store, alice)
    a = await send(store, one, alice, when=1)
    b = await send(store, two, alice, when=2)
    await send(store, three, alice, when=3)
    c = await send(store, one, alice, when=4)
    d = await send(store, two, alice, when=5)
    assert [m.id for m in await store.messages_after([one.id, two.id], a.id, 10)] == [b.id, c.id, d.id]
    assert [m.id for m in await store.messages_after([one.id, two.id], "", 2)] == [a.id, b.id]
    assert await store.messages_after([one.id, two.id], d.id, 10) == []
    assert await store.messages_after([], "", 10) == []


async def test_messages_changed_since(store):
    (alice,) = await users(store, "alice")
    one, two = await group(store, alice), await group(store, alice)
    a = await send(store, one, alice, when=1)
    b = await send(store, two, alice, when=2)
    c = await send(store, one, alice, when=3)
    later = await send(store, one, alice, when=4)
    await store.update_message(b.id, {"content": "b2", "edited_at": at(10), "updated_at": at(10)})
    await store.update_message(a.id, {"deleted": 1, "content": "", "updated_at": at(11)})
    await store.update_message(later.id, {"content": "x", "updated_at": at(12)})  # after the bound: not included
    changed = await store.messages_changed_since([one.id, two.id], at(5), c.id, 10)
    assert [(m.id, m.updated_at) for m in changed] == [(b.id, at(10)), (a.id, at(11))]
    assert changed[1].deleted is True
    assert [m.id for m in await store.messages_changed_since([one.id, two.id], at(10), c.id, 10)] == [a.id]
    assert [m.id for m in await store.messages_changed_since([one.id, two.id], at(5), c.id, 1)] == [b.id]
    assert [m.id for m in await store.messages_changed_since([one.id], at(5), later.id, 10)] == [a.id, later.id]
    assert await store.messages_changed_since([], at(0), c.id, 10) == []


# uploads


async def test_uploads(store):
    (alice,) = await users(store, "alice")
    upload = Upload(
        id="ab" * 20,
        owner_id=alice.id,
        filename="a.png",
        size=3,
        mime_type="image/png",
        purpose="avatar",
        created_at=at(1),
    )
    await store.insert_upload(upload)
    assert await store.get_upload(upload.id) == upload
    assert await store.get_upload("cd" * 20) is None
    with pytest.raises(DuplicateKey) as caught:
        await store.insert_upload(upload)
    assert caught.value.field == "id"


# calls


def a_call(initiator: User, *others: User, kind: str = "audio", **extra: Any) -> Call:
    return Call(
        id=new_id(),
        type=kind,  # type: ignore[arg-type]
        initiator_id=initiator.id,
        status="ringing",
        created_at=at(1),
        updated_at=at(1),
        participants=[CallParticipant(initiator.id, "answered", joined_at=at(1))]
        + [CallParticipant(u.id, "invited") for u in others],
        **extra,
    )


async def test_save_call_twice_updates_it(store):
    alice, bob = await users(store, "alice", "bob")
    call = a_call(alice, bob, chat_id=new_id())
    await store.save_call(call)
    assert await store.get_call(call.id) == call
    call.status, call.started_at, call.updated_at = "ongoing", at(2), at(2)
    call.participants[1] = CallParticipant(bob.id, "answered", joined_at=at(2))
    await store.save_call(call)
    call.status, call.ended_at, call.duration = "completed", at(5), 3
    call.participants[1].status, call.participants[1].left_at = "left", at(5)
    await store.save_call(call)
    assert await store.get_call(call.id) == call
    assert await store.get_call(new_id()) is None
    calls, total = await store.user_calls(bob.id, None, 1, 10)
    assert [c.id for c in calls] == [call.id] and total == 1  # saved three times, listed once


async def test_user_calls_newest_first_with_type_filter_and_pages(store):
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    first = a_call(alice, bob)
    second = a_call(bob, alice, kind="video")
    third = a_call(carol, alice, bob)
    theirs = a_call(bob, carol)
    for call in (first, second, third, theirs):
        await store.save_call(call)
    calls, total = await store.user_calls(alice.id, None, 1, 10)
    assert [c.id for c in calls] == [third.id, second.id, first.id] and total == 3
    calls, total = await store.user_calls(alice.id, None, 2, 2)
    assert [c.id for c in calls] == [first.id] and total == 3
    calls, total = await store.user_calls(alice.id, "audio", 1, 10)
    assert [c.id for c in calls] == [third.id, first.id] and total == 2
    calls, total = await store.user_calls(alice.id, "video", 1, 10)
    assert [c.id for c in calls] == [second.id] and total == 1
    assert calls[0] == second
    assert await store.user_calls(new_id(), None, 1, 10) == ([], 0)


# a page of chats at once


async def test_members_and_unread_answer_a_page_of_chats_at_once(store):
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    one, two = await group(store, alice, bob), await group(store, carol, bob, alice)
    nobody = new_id()
    first = await send(store, one, bob, when=1)
    await send(store, one, alice, when=2)
    await send(store, one, bob, when=3)
    await send(store, two, carol, when=4)
    gone = await send(store, two, bob, when=5)
    await store.update_message(gone.id, {"content": "", "deleted": 1})
    members, unread = await store.members_and_unread(
        [one.id, two.id, nobody], alice.id, {one.id: first.id, two.id: None, nobody: None}
    )
    assert members == {one.id: await store.list_members(one.id), two.id: await store.list_members(two.id), nobody: []}
    assert [m.user_id for m in members[two.id]] == [carol.id, bob.id, alice.id]  # join order
    assert unread == {one.id: 1, two.id: 1, nobody: 0}
    for chat_id, mark in ((one.id, first.id), (two.id, None)):
        assert unread[chat_id] == await store.count_unread(chat_id, alice.id, mark)
    members, unread = await store.members_and_unread([one.id])
    assert list(members) == [one.id] and unread == {}
    assert await store.members_and_unread([], alice.id, {}) == ({}, {})


# errors: every backend raises the same store error for the same failure


async def test_a_duplicate_id_names_the_id(store):
    alice, bob = await users(store, "alice", "bob")
    with pytest.raises(DuplicateKey) as caught:
        await store.insert_user(dataclasses.replace(a_user("other"), id=alice.id))
    assert caught.value.field == "id"
    chat = await group(store, alice, bob)
    sent = await send(store, chat, alice)
    with pytest.raises(DuplicateKey) as caught:
        await store.insert_message(dataclasses.replace(a_message(chat.id, bob.id, "again"), id=sent.id))
    assert caught.value.field == "id"


async def test_a_member_of_a_chat_that_does_not_exist_is_a_constraint_violation_not_a_duplicate(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice)
    nowhere = new_id()
    with pytest.raises(ConstraintViolation) as caught:
        await store.add_members([a_member(chat.id, bob.id), a_member(nowhere, bob.id)])
    assert not isinstance(caught.value, DuplicateKey)
    assert await store.get_member(nowhere, bob.id) is None
    assert await store.user_chat_ids(bob.id) == []  # nothing of the refused call was stored


async def test_a_closed_store_is_unavailable(store):
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get_user(new_id())
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_a_store_that_cannot_reach_its_storage_is_unavailable(backend: Backend):
    unreachable = backend.unreachable()
    with pytest.raises(StoreUnavailable) as caught:
        await unreachable.open()
    assert str(caught.value)  # a message the command line can print instead of a traceback


async def test_a_change_may_only_name_fields_of_the_document_and_plain_values(store):
    """The field names of `changes` are checked against the document on every backend (SQLite writes them into SQL)."""
    alice, bob = await users(store, "alice", "bob")
    message = await send(store, await group(store, alice, bob), alice)
    chat, members = await store.get_chat(message.chat_id), await store.list_members(message.chat_id)
    assert chat is not None
    attempts = [
        store.update_chat(chat.id, {"name = 'taken', created_by": bob.id}),
        store.update_chat(chat.id, {"no_such_field": 1}),
        store.update_chat(chat.id, {"id": new_id()}),
        store.update_member(chat.id, bob.id, {"role = 'admin', muted": 1}),
        store.update_member(chat.id, bob.id, {"chat_id": new_id()}),
        store.update_message(message.id, {"sender_id = ?, content": "x"}),
        store.update_message(message.id, {"id": new_id()}),
        store.update_user(bob.id, {"role = 'admin', status": "x"}),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError, match="not document fields"):
            await attempt
    for attempt in [
        store.update_chat(chat.id, {"name": {"$ne": None}}),
        store.update_member(chat.id, bob.id, {"role": ["admin"]}),
        store.update_message(message.id, {"metadata": "not an object"}),
        store.update_user(bob.id, {"username": {"$ne": None}}),
    ]:
        with pytest.raises(TypeError):
            await attempt
    assert await store.get_chat(chat.id) == chat
    assert await store.list_members(chat.id) == members
    assert await store.get_message(message.id) == message
    assert await store.get_user(bob.id) == bob


# what a client sends where a string belongs never becomes a query (the MongoDB backends)


@pytest.mark.parametrize("backend", MONGO_BACKENDS, indirect=True)
async def test_an_object_where_a_string_belongs_never_becomes_an_operator(store):
    alice, bob = await users(store, "alice", "bob")
    chat = await group(store, alice, bob)
    await send(store, chat, alice, "secret", client_id="c-1")
    session = a_session(alice)
    await store.insert_session(session)
    await store.insert_reset_token("h1", alice.id, at(100))
    anything = {"$ne": None}
    attempts = [
        store.get_user_by_email(anything),  # type: ignore[arg-type]
        store.get_user(anything),  # type: ignore[arg-type]
        store.get_users([anything]),  # type: ignore[list-item]
        store.search_users({"$regex": ".*"}, 1, 10),  # type: ignore[arg-type]
        store.get_session(anything),  # type: ignore[arg-type]
        store.rotate_refresh(session.id, anything, "new", at(200)),  # type: ignore[arg-type]
        store.consume_reset_token(anything, at(1)),  # type: ignore[arg-type]
        store.get_private_chat(anything),  # type: ignore[arg-type]
        store.get_member(chat.id, anything),  # type: ignore[arg-type]
        store.list_messages(chat.id, limit=10, search={"$regex": ".*"}),  # type: ignore[arg-type]
        store.list_messages(chat.id, limit=10, before=anything),  # type: ignore[arg-type]
        store.count_messages(chat.id, {"$regex": ".*"}),  # type: ignore[arg-type]
        store.get_message_by_client_id(alice.id, anything),  # type: ignore[arg-type]
        store.user_chats(anything, None, None, 1, 10),  # type: ignore[arg-type]
        store.user_calls(alice.id, anything, 1, 10),  # type: ignore[arg-type]
        store.messages_after(anything, "", 10),  # type: ignore[arg-type]
        store.blocked_ids_of(bob.id, [anything]),  # type: ignore[list-item]
    ]
    for attempt in attempts:
        with pytest.raises(TypeError):
            await attempt
    # and in the values and field names of a change
    with pytest.raises(TypeError):
        await store.update_user(bob.id, {"username": anything})
    with pytest.raises(ValueError, match="not document fields"):
        await store.update_user(bob.id, {"$set": {"role": "admin"}})
    with pytest.raises(ValueError, match="not document fields"):
        await store.update_member(chat.id, bob.id, {"role.$": "admin"})
    assert (await store.get_user(bob.id)) == bob
    stored = await store.get_session(session.id)
    assert stored is not None and stored.refresh_jti == session.refresh_jti
    assert await store.consume_reset_token("h1", at(1)) == alice.id
