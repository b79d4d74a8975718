"""Messaging over Socket.IO: sends, fan-out, edits, deletes, typing, receipts, sync, idempotency, live membership.

Every wait is on an ack or an event. To show that an event did NOT reach a socket, a later marker event is
sent that must arrive after it on that same socket (one connection delivers in order); once the marker is
there, the absence is asserted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.chat_support import ISO, MESSAGE_KEYS, connect, group_chat, history, private_chat, rest_send
from tests.conftest import Account, Api, Socket

pytestmark = pytest.mark.backends  # each test runs on SQLite and on FerretDB (tests/conftest.py)

# helpers ------------------------------------------------------------------------------------------------------------


async def send(socket: Socket, chat_id: str, content: str, **extra: Any) -> dict[str, Any]:
    answer = await socket.call("send_message", {"chatId": chat_id, "content": content, **extra})
    assert answer["success"] is True, answer
    return answer["data"]


async def marker(socket: Socket, sender: Socket, chat_id: str, count: int) -> dict[str, Any]:
    """`sender` posts into `chat_id`; waits until `socket` holds `count` `new_message`s, the marker last."""
    sent = await send(sender, chat_id, "marker")
    received = await socket.seen.wait_for("new_message", count)
    assert received[-1]["id"] == sent["id"], received
    return sent


def ids(events: list[Any]) -> list[str]:
    return [e["id"] for e in events]


def assert_message(message: dict[str, Any], *, chat_id: str, sender: Account, content: str) -> None:
    assert set(message) == MESSAGE_KEYS, message
    assert re.fullmatch(r"[0-9a-f]{24}", message["id"]), message
    assert message["chatId"] == chat_id
    assert message["senderId"] == sender.id
    assert message["sender"] == {"id": sender.id, "username": sender.username, "name": sender.username, "avatar": None}
    assert message["content"] == content
    assert message["type"] == "text"
    assert message["status"] == "sent"
    assert message["deleted"] is False and message["editedAt"] is None
    assert ISO.match(message["createdAt"]) and message["updatedAt"] == message["createdAt"]


# sending ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["/", "/messages"])
async def test_send_message_acks_and_reaches_every_other_socket_in_the_chat(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any], namespace: str
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    side_chat = await private_chat(api, alice, carol)
    sender = await connect(sockets, alice, namespace)
    alice_other = await connect(sockets, alice, "/messages" if namespace == "/" else "/")
    bob_root, bob_messages = await connect(sockets, bob, "/"), await connect(sockets, bob, "/messages")
    carol_root = await connect(sockets, carol)

    answer = await sender.call("send_message", {"chatId": chat, "content": "hello", "clientId": "c-1"})

    assert answer["success"] is True and set(answer) == {"success", "data"}, answer
    message = answer["data"]
    assert_message(message, chat_id=chat, sender=alice, content="hello")
    assert message["clientId"] == "c-1"
    for other in (bob_root, bob_messages, alice_other):
        assert await other.seen.wait_for("new_message") == [message]
    # not echoed to the sending socket, nor to a user outside the chat
    reply = await marker(sender, bob_root, chat, 1)
    assert ids(sender.seen.of("new_message")) == [reply["id"]]
    await marker(carol_root, sender, side_chat, 1)
    assert len(carol_root.seen.of("new_message")) == 1
    assert [m["id"] for m in await history(api, bob, chat)] == [reply["id"], message["id"]]


async def test_message_sent_over_rest_reaches_every_member_socket_the_senders_included(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    listeners = [
        await connect(sockets, alice, "/"),
        await connect(sockets, alice, "/messages"),
        await connect(sockets, bob, "/"),
        await connect(sockets, bob, "/messages"),
    ]

    message = await rest_send(api, alice, chat, "over rest")

    assert_message(message, chat_id=chat, sender=alice, content="over rest")
    for listener in listeners:
        assert await listener.seen.wait_for("new_message") == [message]


# edits and deletes --------------------------------------------------------------------------------------------------


async def test_edit_message_broadcasts_message_edited_to_the_other_sockets(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    editor, alice_other, bob_socket = (
        await connect(sockets, alice),
        await connect(sockets, alice, "/messages"),
        await connect(sockets, bob),
    )
    message = await send(editor, chat, "first")

    answer = await editor.call("edit_message", {"messageId": message["id"], "content": "second"})

    assert answer["success"] is True, answer
    edited = answer["data"]
    assert edited["id"] == message["id"] and edited["content"] == "second" and ISO.match(edited["editedAt"])
    expected = {"messageId": message["id"], "chatId": chat, "content": "second", "editedAt": edited["editedAt"]}
    assert await bob_socket.seen.wait_for("message_edited") == [expected]
    assert await alice_other.seen.wait_for("message_edited") == [expected]
    await marker(editor, bob_socket, chat, 1)
    assert editor.seen.of("message_edited") == []
    stored = next(m for m in await history(api, bob, chat) if m["id"] == message["id"])
    assert stored["content"] == "second" and stored["editedAt"] == edited["editedAt"]


async def test_delete_message_broadcasts_message_deleted_and_leaves_a_tombstone(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    deleter, alice_other, bob_socket = (
        await connect(sockets, alice),
        await connect(sockets, alice, "/messages"),
        await connect(sockets, bob),
    )
    message = await send(deleter, chat, "oops")

    answer = await deleter.call("delete_message", {"messageId": message["id"]})

    assert answer["success"] is True, answer
    payload = answer["data"]
    assert set(payload) == {"messageId", "chatId", "deletedAt"}, payload
    assert payload["messageId"] == message["id"] and payload["chatId"] == chat and ISO.match(payload["deletedAt"])
    assert await bob_socket.seen.wait_for("message_deleted") == [payload]
    assert await alice_other.seen.wait_for("message_deleted") == [payload]
    await marker(deleter, bob_socket, chat, 1)
    assert deleter.seen.of("message_deleted") == []
    stored = next(m for m in await history(api, bob, chat) if m["id"] == message["id"])
    assert stored["deleted"] is True and stored["content"] == ""


async def test_edit_and_delete_over_rest_reach_every_member_socket(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    listeners = [await connect(sockets, alice), await connect(sockets, alice, "/messages"), await connect(sockets, bob)]
    message = await rest_send(api, alice, chat, "draft")

    status, body = await api.put(f"/messages/{message['id']}", token=alice.token, json={"content": "final"})
    assert status == 200, body
    edited = {"messageId": message["id"], "chatId": chat, "content": "final", "editedAt": body["data"]["editedAt"]}
    status, body = await api.delete(f"/messages/{message['id']}", token=alice.token)
    assert status == 200, body
    deleted = {"messageId": message["id"], "chatId": chat, "deletedAt": body["data"]["deletedAt"]}

    for listener in listeners:
        assert await listener.seen.wait_for("message_edited") == [edited]
        assert await listener.seen.wait_for("message_deleted") == [deleted]


# typing and receipts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["typing_start", "typing_stop"])
async def test_typing_reaches_the_other_members_only(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any], event: str
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    chat = await group_chat(api, alice, bob)
    side_chat = await private_chat(api, alice, carol)
    typist, typist_other = await connect(sockets, alice), await connect(sockets, alice, "/messages")
    bob_root, bob_messages = await connect(sockets, bob), await connect(sockets, bob, "/messages")
    carol_socket = await connect(sockets, carol)

    answer = await typist.call(event, {"chatId": chat})

    expected = {"chatId": chat, "userId": alice.id, "username": alice.username, "name": alice.username}
    assert answer == {"success": True, "data": expected}
    assert await bob_root.seen.wait_for(event) == [expected]
    assert await bob_messages.seen.wait_for(event) == [expected]
    # not the typist's own sockets (that one included), nor anyone outside the chat
    reply = await marker(typist, bob_root, chat, 1)
    assert ids(await typist_other.seen.wait_for("new_message")) == [reply["id"]]
    await marker(carol_socket, typist, side_chat, 1)
    assert typist.seen.of(event) == [] and typist_other.seen.of(event) == [] and carol_socket.seen.of(event) == []


async def test_mark_read_sends_read_status_to_the_other_members(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    alice_socket, bob_socket = await connect(sockets, alice), await connect(sockets, bob)
    first = await send(alice_socket, chat, "one")
    second = await send(alice_socket, chat, "two")
    await bob_socket.seen.wait_for("new_message", 2)

    answer = await bob_socket.call("mark_read", {"chatId": chat, "messageId": first["id"]})

    assert answer["success"] is True, answer
    assert answer["data"]["messageId"] == first["id"] and answer["data"]["unreadCount"] == 1
    (status,) = await alice_socket.seen.wait_for("message_status")
    assert set(status) == {"chatId", "messageId", "userId", "status", "at", "first"}, status
    assert status["chatId"] == chat and status["messageId"] == first["id"] and status["userId"] == bob.id
    assert status["status"] == "read" and ISO.match(status["at"])
    # without a messageId everything is read: the status names the latest message
    answer = await bob_socket.call("mark_read", {"chatId": chat})
    assert answer["success"] is True and answer["data"]["unreadCount"] == 0, answer
    statuses = await alice_socket.seen.wait_for("message_status", 2)
    assert statuses[1]["messageId"] == second["id"] and statuses[1]["status"] == "read"
    await marker(bob_socket, alice_socket, chat, 3)
    assert bob_socket.seen.of("message_status") == []
    assert [m["status"] for m in await history(api, alice, chat)][1:] == ["read", "read"]


async def test_message_delivered_sends_delivered_status_to_the_senders_sockets(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    alice_root, alice_messages = await connect(sockets, alice), await connect(sockets, alice, "/messages")
    bob_socket = await connect(sockets, bob)
    message = await send(alice_root, chat, "ping")
    await bob_socket.seen.wait_for("new_message")

    answer = await bob_socket.call("message_delivered", {"messageId": message["id"]})

    assert answer["success"] is True, answer
    for sender_socket in (alice_root, alice_messages):
        (status,) = await sender_socket.seen.wait_for("message_status")
        assert set(status) == {"chatId", "messageId", "userId", "status", "at", "first"}, status
        assert status["chatId"] == chat and status["messageId"] == message["id"] and status["userId"] == bob.id
        assert status["status"] == "delivered" and ISO.match(status["at"])
    await marker(bob_socket, alice_root, chat, 2)
    assert bob_socket.seen.of("message_status") == []
    assert (await history(api, alice, chat))[-1]["status"] == "delivered"


# catching up ---------------------------------------------------------------------------------------------------------


async def test_sync_after_a_message_id_answers_newer_messages_and_later_changes(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    m0, m1, m2, m3 = [await rest_send(api, alice, chat, f"m{i}") for i in range(4)]
    status, _ = await api.put(f"/messages/{m0['id']}", token=alice.token, json={"content": "m0 edited"})
    assert status == 200
    status, _ = await api.delete(f"/messages/{m1['id']}", token=alice.token)
    assert status == 200
    bob_socket = await connect(sockets, bob)

    answer = await bob_socket.call("sync", {"after": m1["id"]})

    assert answer["success"] is True, answer
    data = answer["data"]
    assert ids(data["messages"]) == [m2["id"], m3["id"]]
    assert data["messages"][0] == {**m2, "status": "sent"}
    changed = {m["id"]: m for m in data["changed"]}
    assert set(changed) == {m0["id"], m1["id"]}
    assert changed[m0["id"]]["content"] == "m0 edited" and changed[m0["id"]]["editedAt"] is not None
    assert changed[m1["id"]]["deleted"] is True and changed[m1["id"]]["content"] == ""
    assert data["hasMore"] is False
    # changes made before the cursor are not repeated
    m4 = await rest_send(api, alice, chat, "m4")
    answer = await bob_socket.call("sync", {"after": m4["id"]})
    assert answer["data"]["messages"] == [] and answer["data"]["changed"] == [], answer


async def test_sync_after_an_iso_time_answers_the_messages_created_after_it(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    sent = [await rest_send(api, alice, chat, f"m{i}") for i in range(4)]
    cursor = sent[0]["createdAt"]
    expected = [m["id"] for m in sent if m["createdAt"] > cursor]
    assert sent[-1]["id"] in expected
    bob_socket = await connect(sockets, bob)

    answer = await bob_socket.call("sync", {"after": cursor})

    assert answer["success"] is True, answer
    assert ids(answer["data"]["messages"]) == expected
    assert answer["data"]["changed"] == [] and answer["data"]["hasMore"] is False
    for long_ago in ("2000-01-01T00:00:00.000Z", "1960-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00"):
        answer = await bob_socket.call("sync", {"after": long_ago})
        assert ids(answer["data"]["messages"]) == [m["id"] for m in sent], (long_ago, answer)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the in-process server in a local time zone eight hours off UTC."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
async def test_sync_reads_a_time_without_offset_as_utc(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    sent = [await rest_send(api, alice, chat, f"m{i}") for i in range(3)]
    cursor = sent[0]["createdAt"]
    bob_socket = await connect(sockets, bob)

    with_zone = await bob_socket.call("sync", {"after": cursor})
    without_zone = await bob_socket.call("sync", {"after": cursor.removesuffix("Z")})

    assert without_zone["success"] is True, without_zone
    assert ids(without_zone["data"]["messages"]) == ids(with_zone["data"]["messages"])
    assert sent[0]["id"] not in ids(without_zone["data"]["messages"])


async def test_sync_with_a_chat_id_answers_only_that_chat(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    with_bob, with_carol = await private_chat(api, alice, bob), await private_chat(api, alice, carol)
    start = await rest_send(api, bob, with_bob, "start")
    first = await rest_send(api, bob, with_bob, "b1")
    other = await rest_send(api, carol, with_carol, "c1")
    last = await rest_send(api, bob, with_bob, "b2")
    alice_socket = await connect(sockets, alice, "/messages")

    only = await alice_socket.call("sync", {"chatId": with_bob, "after": start["id"]})
    everything = await alice_socket.call("sync", {"after": start["id"]})

    assert ids(only["data"]["messages"]) == [first["id"], last["id"]], only
    assert ids(everything["data"]["messages"]) == [first["id"], other["id"], last["id"]], everything


async def test_sync_with_a_limit_answers_the_oldest_and_has_more(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    start, *sent = [await rest_send(api, alice, chat, f"m{i}") for i in range(4)]
    bob_socket = await connect(sockets, bob)

    page = await bob_socket.call("sync", {"after": start["id"], "limit": 2})

    assert page["success"] is True, page
    assert ids(page["data"]["messages"]) == [sent[0]["id"], sent[1]["id"]] and page["data"]["hasMore"] is True
    rest = await bob_socket.call("sync", {"after": sent[1]["id"], "limit": 2})
    assert ids(rest["data"]["messages"]) == [sent[2]["id"]] and rest["data"]["hasMore"] is False, rest
    exact = await bob_socket.call("sync", {"after": start["id"], "limit": 3})
    assert len(exact["data"]["messages"]) == 3 and exact["data"]["hasMore"] is False, exact


async def test_sync_answers_the_cursor_it_was_given_when_nothing_is_new(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    """The cursor is the last new message's id, else `after` itself: an id, or a time as sent.

    The server's own times are 24 characters long, like ids: a time must not come back as an id.
    """
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    first, last = [await rest_send(api, alice, chat, f"m{i}") for i in range(2)]
    bob_socket = await connect(sockets, bob)
    assert len(last["createdAt"]) == 24, last

    for after, cursor in (
        (first["id"], last["id"]),  # new messages: the last one's id
        (last["id"], last["id"]),  # nothing new after an id: that id
        (last["createdAt"], last["createdAt"]),  # nothing new after one of the server's times: that time
        ("2999-01-01T00:00:00Z", "2999-01-01T00:00:00Z"),  # nothing new after a time of another length
    ):
        answer = await bob_socket.call("sync", {"after": after})
        assert answer["success"] is True, answer
        assert answer["data"]["cursor"] == cursor, (after, answer)


# idempotency --------------------------------------------------------------------------------------------------------


async def test_repeated_client_id_returns_the_same_message_and_delivers_it_once(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    alice_socket, alice_other, bob_socket = (
        await connect(sockets, alice),
        await connect(sockets, alice, "/messages"),
        await connect(sockets, bob),
    )

    first = await send(alice_socket, chat, "once", clientId="dup-1")
    again = await send(alice_socket, chat, "once", clientId="dup-1")
    from_other_device = await send(alice_other, chat, "once", clientId="dup-1")

    assert again["id"] == first["id"] and from_other_device["id"] == first["id"]
    status, body = await api.post(
        "/messages", token=alice.token, json={"chatId": chat, "content": "once", "clientId": "dup-1"}
    )
    assert status == 200 and body["data"]["id"] == first["id"], body
    after = await marker(bob_socket, alice_socket, chat, 2)
    assert ids(bob_socket.seen.of("new_message")) == [first["id"], after["id"]]
    assert ids(await history(api, bob, chat)) == [after["id"], first["id"]]


# both namespaces ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["/", "/messages"])
async def test_every_message_event_works_on_the_namespace(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any], namespace: str
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    alice_socket, bob_socket = await connect(sockets, alice, namespace), await connect(sockets, bob, namespace)
    message = await send(alice_socket, chat, "hi")
    assert (await bob_socket.seen.wait_for("new_message"))[0]["id"] == message["id"]

    calls = [
        (bob_socket, "message_delivered", {"messageId": message["id"]}, "message_status"),
        (bob_socket, "mark_read", {"chatId": chat, "messageId": message["id"]}, "message_status"),
        (alice_socket, "typing_start", {"chatId": chat}, "typing_start"),
        (alice_socket, "typing_stop", {"chatId": chat}, "typing_stop"),
        (alice_socket, "edit_message", {"messageId": message["id"], "content": "hi!"}, "message_edited"),
        (alice_socket, "delete_message", {"messageId": message["id"]}, "message_deleted"),
    ]
    for caller, event, payload, broadcast in calls:
        listener = bob_socket if caller is alice_socket else alice_socket
        before = len(listener.seen.of(broadcast))
        answer = await caller.call(event, payload)
        assert answer["success"] is True, (event, answer)
        await listener.seen.wait_for(broadcast, before + 1)
    answer = await bob_socket.call("sync", {"after": "2000-01-01T00:00:00.000Z"})
    assert answer["success"] is True and ids(answer["data"]["messages"]) == [message["id"]], answer


# membership changes on live sockets ---------------------------------------------------------------------------------


async def test_member_added_over_rest_gets_the_group_live(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    team = await group_chat(api, alice, bob)
    alice_socket = await connect(sockets, alice)
    carol_root, carol_messages = await connect(sockets, carol), await connect(sockets, carol, "/messages")

    status, body = await api.post(f"/groups/{team}/participants", token=alice.token, json={"userIds": [carol.id]})
    assert status == 200, body

    for socket in (carol_root, carol_messages):
        (created,) = await socket.seen.wait_for("chat_created")
        assert created["id"] == team and created["type"] == "group"
        assert {p["id"] for p in created["participants"]} == {alice.id, bob.id, carol.id}
        (added,) = await socket.seen.wait_for("participant_added")
        assert added["chatId"] == team and added["addedBy"] == alice.id
        assert [p["id"] for p in added["participants"]] == [carol.id]
    message = await send(alice_socket, team, "welcome")
    for socket in (carol_root, carol_messages):
        assert await socket.seen.wait_for("new_message") == [message]
    # and the new member can talk in it at once
    reply = await send(carol_root, team, "thanks")
    assert ids(await alice_socket.seen.wait_for("new_message")) == [reply["id"]]


async def test_removed_member_gets_participant_removed_and_no_further_messages(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    team = await group_chat(api, alice, bob, carol)
    side_chat = await private_chat(api, alice, carol)
    alice_socket, bob_socket = await connect(sockets, alice), await connect(sockets, bob)
    carol_root, carol_messages = await connect(sockets, carol), await connect(sockets, carol, "/messages")

    status, body = await api.delete(f"/groups/{team}/participants/{carol.id}", token=alice.token)
    assert status == 200, body

    for socket in (carol_root, carol_messages):
        assert await socket.seen.wait_for("participant_removed") == [
            {"chatId": team, "userId": carol.id, "removedBy": alice.id}
        ]
    after_removal = await send(alice_socket, team, "carol is gone")
    assert ids(await bob_socket.seen.wait_for("new_message")) == [after_removal["id"]]
    later = await marker(carol_root, alice_socket, side_chat, 1)
    assert ids(await carol_messages.seen.wait_for("new_message")) == [later["id"]]
    for socket in (carol_root, carol_messages):
        assert [m["chatId"] for m in socket.seen.of("new_message")] == [side_chat]
    refused = await carol_root.call("send_message", {"chatId": team, "content": "still here?"})
    assert refused["success"] is False and refused["error"]["code"] == "MSG_002", refused


async def test_group_deletion_sends_chat_deleted_to_members(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    team = await group_chat(api, alice, bob)
    alice_socket, bob_root, bob_messages = (
        await connect(sockets, alice),
        await connect(sockets, bob),
        await connect(sockets, bob, "/messages"),
    )

    status, body = await api.delete(f"/groups/{team}", token=alice.token)
    assert status == 200, body

    for socket in (alice_socket, bob_root, bob_messages):
        assert await socket.seen.wait_for("chat_deleted") == [{"chatId": team, "deletedBy": alice.id}]
    refused = await bob_root.call("send_message", {"chatId": team, "content": "hello?"})
    assert refused["success"] is False and refused["error"]["code"] == "MSG_002", refused
