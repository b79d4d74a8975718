"""`/messages` over REST: the Message shape, validation, replies, idempotent sends, history, edits, tombstones."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.chat_support import ISO, MESSAGE_KEYS, MISSING, group_chat, history_page, private_chat, rest_send
from tests.rest_support import assert_error

pytestmark = pytest.mark.backends  # each test runs on SQLite and on FerretDB (tests/conftest.py)


async def contents(api, me, chat_id: str, **params) -> list[str]:
    return [m["content"] for m in (await history_page(api, me, chat_id, **params))["messages"]]


@pytest.fixture
async def pair(make_user, api):
    a, b = await make_user(), await make_user()
    return a, b, await private_chat(api, a, b, statuses=(201,))


# sending


async def test_send_answers_201_with_the_full_message(api, pair):
    a, b, chat_id = pair
    status, body = await api.post(
        "/messages",
        token=a.token,
        json={"chatId": chat_id, "content": "Hello", "type": "text", "metadata": {"k": [1, "v"]}, "clientId": "c-1"},
    )
    assert status == 201, body
    assert body["success"] is True
    message = body["data"]
    assert set(message) == MESSAGE_KEYS
    assert re.fullmatch(r"[0-9a-f]{24}", message["id"])
    assert message["chatId"] == chat_id and message["senderId"] == a.id
    assert message["sender"] == {"id": a.id, "username": a.username, "name": a.username, "avatar": None}
    assert (message["content"], message["type"], message["metadata"]) == ("Hello", "text", {"k": [1, "v"]})
    assert (message["replyTo"], message["clientId"], message["editedAt"]) == (None, "c-1", None)
    assert message["status"] == "sent" and message["deleted"] is False
    assert ISO.match(message["createdAt"]) and ISO.match(message["updatedAt"])
    # history answers the same document
    stored = (await history_page(api, b, chat_id))["messages"]
    assert stored == [message]


@pytest.mark.parametrize(
    "body",
    [
        {"content": "x" * 10_001},
        {"content": ""},
        {"content": "   \n\t"},
        {},
        {"content": "hi", "type": "sticker"},
        {"content": "hi", "type": None},
        {"content": {"$gt": ""}},
        {"content": ["a"]},
        {"content": 5},
        {"content": "hi", "metadata": {"blob": "x" * (8 * 1024)}},
        {"content": "hi", "metadata": "not an object"},
        {"content": "hi", "metadata": [1, 2]},
        {"content": "hi", "replyTo": "not-an-id"},
        {"content": "hi", "clientId": ""},
        {"content": "hi", "chatId": "not-an-id"},
        {"content": "hi", "chatId": {"$ne": ""}},
        {"content": "hi", "chatId": None},
        {"content": "x" * 10_001, "type": "file"},
    ],
)
async def test_send_validation_is_422(api, pair, body):
    a, b, chat_id = pair
    status, answer = await api.post("/messages", token=a.token, json={"chatId": chat_id, **body})
    assert_error(status, answer, 422, "VAL_001")
    assert (await history_page(api, b, chat_id))["messages"] == []


async def test_send_limits_are_inclusive(api, pair):
    a, _, chat_id = pair
    longest = await rest_send(api, a, chat_id, "x" * 10_000)
    assert len(longest["content"]) == 10_000
    await rest_send(api, a, chat_id, "y")
    await rest_send(api, a, chat_id, "m", metadata={"blob": "x" * (8 * 1024 - 20)})
    picture = await rest_send(api, a, chat_id, "", type="image", metadata={"url": "/api/v1/uploads/x"})
    assert picture["type"] == "image" and picture["content"] == ""
    for kind in ("video", "audio", "file"):
        assert (await rest_send(api, a, chat_id, "caption", type=kind))["type"] == kind


async def test_send_needs_a_token_and_an_existing_chat(api, pair):
    a, _, chat_id = pair
    status, body = await api.post("/messages", json={"chatId": chat_id, "content": "hi"})
    assert_error(status, body, 401, "AUTH_001")
    status, body = await api.post("/messages", token=a.token, json={"chatId": MISSING, "content": "hi"})
    assert_error(status, body, 404, "MSG_002")
    status, body = await api.post(
        "/messages", token=a.token, data=b"chatId=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_error(status, body, 400, "VAL_001")


async def test_reply_must_be_a_message_of_the_same_chat(api, make_user, pair):
    a, b, chat_id = pair
    other_chat = await group_chat(api, a, b, name="crew")
    elsewhere = await rest_send(api, a, other_chat, "elsewhere")
    original = await rest_send(api, b, chat_id, "question")
    reply = await rest_send(api, a, chat_id, "answer", replyTo=original["id"])
    assert reply["replyTo"] == original["id"]
    for bad in (elsewhere["id"], MISSING):
        status, body = await api.post(
            "/messages", token=a.token, json={"chatId": chat_id, "content": "x", "replyTo": bad}
        )
        assert_error(status, body, 422, "VAL_001")
        assert "replyTo" in body["error"]["details"]
    assert await contents(api, a, chat_id) == ["answer", "question"]


async def test_client_id_makes_a_send_idempotent(api, pair):
    a, b, chat_id = pair
    first = await rest_send(api, a, chat_id, "once", clientId="tap-1")
    status, body = await api.post(
        "/messages", token=a.token, json={"chatId": chat_id, "content": "once again", "clientId": "tap-1"}
    )
    assert status == 200, body
    assert body["data"]["id"] == first["id"] and body["data"]["content"] == "once"
    data = await history_page(api, a, chat_id)
    assert [m["id"] for m in data["messages"]] == [first["id"]]
    assert data["pagination"]["total"] == 1
    # unique per sender: another sender may use the same clientId
    theirs = await rest_send(api, b, chat_id, "mine", clientId="tap-1")
    assert theirs["id"] != first["id"]
    assert await contents(api, a, chat_id) == ["mine", "once"]
    status, chat = await api.get(f"/chats/{chat_id}", token=b.token)
    assert chat["data"]["unreadCount"] == 1


async def test_concurrent_repeats_of_a_client_id_store_one_message(api, pair):
    a, b, chat_id = pair
    answers = await asyncio.gather(
        *[
            api.post("/messages", token=a.token, json={"chatId": chat_id, "content": f"try {n}", "clientId": "same"})
            for n in range(6)
        ]
    )
    assert sorted(status for status, _ in answers) == [200] * 5 + [201], answers
    assert len({body["data"]["id"] for _, body in answers}) == 1
    data = await history_page(api, b, chat_id)
    assert len(data["messages"]) == 1 and data["pagination"]["total"] == 1


# history


async def test_history_is_newest_first_and_paged(api, pair):
    a, b, chat_id = pair
    for n in range(5):
        await rest_send(api, a if n % 2 else b, chat_id, f"m{n}")
    data = await history_page(api, a, chat_id)
    assert [m["content"] for m in data["messages"]] == ["m4", "m3", "m2", "m1", "m0"]
    assert data["pagination"] == {"page": 1, "limit": 20, "total": 5, "pages": 1, "hasMore": False}
    data = await history_page(api, a, chat_id, limit=2, page=2)
    assert [m["content"] for m in data["messages"]] == ["m2", "m1"]
    assert data["pagination"] == {"page": 2, "limit": 2, "total": 5, "pages": 3, "hasMore": True}
    data = await history_page(api, a, chat_id, limit=2, page=3)
    assert [m["content"] for m in data["messages"]] == ["m0"]
    data = await history_page(api, a, chat_id, limit=2, page=4)
    assert data["messages"] == [] and data["pagination"]["total"] == 5


@pytest.mark.parametrize(
    "params",
    [
        {"page": "0"},
        {"page": "-1"},
        {"page": "one"},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"before": "nope"},
        {"after": "nope"},
        {"search": ""},
    ],
)
async def test_history_query_validation_is_422(api, pair, params):
    a, _, chat_id = pair
    status, body = await api.get(f"/messages/{chat_id}", token=a.token, params=params)
    assert_error(status, body, 422, "VAL_001")


async def test_cursors_walk_every_message_exactly_once(api, pair):
    a, b, chat_id = pair
    sent = [(await rest_send(api, a if n % 3 else b, chat_id, f"n{n}"))["id"] for n in range(45)]
    newest_first = sent[::-1]

    seen: list[str] = []
    page = await history_page(api, b, chat_id, limit=10)
    while page["messages"]:
        batch = [m["id"] for m in page["messages"]]
        assert batch == sorted(batch, reverse=True)
        seen += batch
        page = await history_page(api, b, chat_id, limit=10, before=batch[-1])
    assert seen == newest_first

    # after: the messages right after the cursor, newest first within the page
    data = await history_page(api, b, chat_id, limit=10, after=sent[9])
    assert [m["id"] for m in data["messages"]] == sent[10:20][::-1]
    data = await history_page(api, b, chat_id, limit=10, after=sent[40])
    assert [m["id"] for m in data["messages"]] == sent[41:][::-1]
    data = await history_page(api, b, chat_id, after=sent[-1])
    assert data["messages"] == []
    # catching up by walking forward also meets every message once
    seen, cursor = [], sent[0]
    while True:
        batch = [m["id"] for m in (await history_page(api, b, chat_id, limit=7, after=cursor))["messages"]]
        if not batch:
            break
        seen += batch[::-1]
        cursor = batch[0]
    assert seen == sent[1:]
    # before the oldest: nothing
    assert (await history_page(api, b, chat_id, before=sent[0]))["messages"] == []


async def test_a_page_number_with_a_cursor_is_refused_and_a_cursor_page_reports_no_number(api, pair):
    """`after=X&page=2` once answered page 1's messages as "page 2 of N": a client following
    `pages` stopped early and missed messages. Now the two are refused together, and a page read
    by cursor names no page number; `hasMore` says whether to walk on."""
    a, b, chat_id = pair
    sent = [(await rest_send(api, a, chat_id, f"p{n}"))["id"] for n in range(7)]
    for cursor in ("after", "before"):
        status, body = await api.get(
            f"/messages/{chat_id}", token=b.token, params={cursor: sent[3], "page": "2", "limit": "2"}
        )
        assert_error(status, body, 422, "VAL_001")
        assert "page" in body["error"]["details"], body
    data = await history_page(api, b, chat_id, after=sent[0], limit=4)
    assert [m["id"] for m in data["messages"]] == sent[1:5][::-1]
    assert data["pagination"] == {"page": None, "limit": 4, "total": 7, "pages": None, "hasMore": True}
    data = await history_page(api, b, chat_id, after=sent[4], limit=4)
    assert [m["id"] for m in data["messages"]] == sent[5:][::-1]
    assert data["pagination"]["hasMore"] is False
    data = await history_page(api, b, chat_id, before=sent[5], limit=4)
    assert [m["id"] for m in data["messages"]] == sent[1:5][::-1]
    assert data["pagination"]["hasMore"] is True
    data = await history_page(api, b, chat_id, before=sent[4], limit=4)
    assert [m["id"] for m in data["messages"]] == sent[:4][::-1]
    assert data["pagination"]["hasMore"] is False


async def test_search_is_a_case_insensitive_literal_substring(api, pair):
    a, b, chat_id = pair
    for text in ("Hello World", "say HELLO", "nothing here", "100% sure", "1000 sure", "snake_case", "snakeXcase"):
        await rest_send(api, a, chat_id, text)
    gone = await rest_send(api, b, chat_id, "hello from a tombstone")
    status, _ = await api.delete(f"/messages/{gone['id']}", token=b.token)
    assert status == 200

    assert await contents(api, b, chat_id, search="hello") == ["say HELLO", "Hello World"]
    assert await contents(api, b, chat_id, search="WORLD") == ["Hello World"]
    assert await contents(api, b, chat_id, search="%") == ["100% sure"]
    assert await contents(api, b, chat_id, search="0% s") == ["100% sure"]
    assert await contents(api, b, chat_id, search="_") == ["snake_case"]
    assert await contents(api, b, chat_id, search="e_c") == ["snake_case"]
    assert await contents(api, b, chat_id, search="no such text") == []
    data = await history_page(api, b, chat_id, search="hello", limit=1)
    assert [m["content"] for m in data["messages"]] == ["say HELLO"]
    assert data["pagination"] == {"page": 1, "limit": 1, "total": 2, "pages": 2, "hasMore": True}


# editing and deleting


async def test_only_the_sender_edits_and_editing_sets_edited_at(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    chat_id = await group_chat(api, a, b, c, name="crew")
    message = await rest_send(api, b, chat_id, "first draft")
    for who in (a, c):  # not even a group admin edits someone else's words
        status, body = await api.put(f"/messages/{message['id']}", token=who.token, json={"content": "theirs"})
        assert_error(status, body, 403, "AUTH_004")
    assert await contents(api, a, chat_id) == ["first draft"]

    status, body = await api.put(f"/messages/{message['id']}", token=b.token, json={"content": "final"})
    assert status == 200, body
    edited = body["data"]
    assert edited["id"] == message["id"] and edited["content"] == "final"
    assert ISO.match(edited["editedAt"]) and edited["editedAt"] >= message["createdAt"]
    assert edited["createdAt"] == message["createdAt"] and edited["updatedAt"] == edited["editedAt"]
    stored = (await history_page(api, c, chat_id))["messages"][0]
    assert (stored["content"], stored["editedAt"]) == ("final", edited["editedAt"])

    for bad in ({"content": ""}, {"content": "x" * 10_001}, {}, {"content": {"$gt": ""}}):
        status, body = await api.put(f"/messages/{message['id']}", token=b.token, json=bad)
        assert_error(status, body, 422, "VAL_001")
    status, body = await api.put(f"/messages/{MISSING}", token=b.token, json={"content": "x"})
    assert_error(status, body, 404, "MSG_002")


async def test_delete_leaves_a_tombstone_that_replies_still_point_at(api, pair):
    a, b, chat_id = pair
    original = await rest_send(api, a, chat_id, "regret", metadata={"k": "v"})
    reply = await rest_send(api, b, chat_id, "what?", replyTo=original["id"])
    status, body = await api.delete(f"/messages/{original['id']}", token=b.token)
    assert_error(status, body, 403, "AUTH_004")  # a private chat has no admins

    status, body = await api.delete(f"/messages/{original['id']}", token=a.token)
    assert status == 200, body
    assert body["data"]["messageId"] == original["id"] and ISO.match(body["data"]["deletedAt"])
    data = await history_page(api, b, chat_id)
    assert [m["id"] for m in data["messages"]] == [reply["id"], original["id"]]
    assert data["pagination"]["total"] == 2
    tomb = data["messages"][1]
    assert tomb["deleted"] is True and tomb["content"] == "" and tomb["metadata"] is None
    assert data["messages"][0]["replyTo"] == original["id"]
    # deleting again is harmless, editing a tombstone is refused
    status, _ = await api.delete(f"/messages/{original['id']}", token=a.token)
    assert status == 200
    status, body = await api.put(f"/messages/{original['id']}", token=a.token, json={"content": "undo"})
    assert_error(status, body, 400, "MSG_001")
    assert (await history_page(api, b, chat_id))["messages"][1]["content"] == ""
    # one can still reply to it
    late = await rest_send(api, b, chat_id, "late reply", replyTo=original["id"])
    assert late["replyTo"] == original["id"]


async def test_group_admin_deletes_any_message_a_member_only_their_own(api, make_user):
    admin, b, c = await make_user(), await make_user(), await make_user()
    chat_id = await group_chat(api, admin, b, c, name="crew")
    by_b = await rest_send(api, b, chat_id, "by b")
    by_admin = await rest_send(api, admin, chat_id, "by admin")
    for target in (by_b, by_admin):
        status, body = await api.delete(f"/messages/{target['id']}", token=c.token)
        assert_error(status, body, 403, "AUTH_004")
    assert [m["deleted"] for m in (await history_page(api, c, chat_id))["messages"]] == [False, False]
    status, body = await api.delete(f"/messages/{by_b['id']}", token=admin.token)
    assert status == 200, body
    status, body = await api.delete(f"/messages/{by_admin['id']}", token=b.token)
    assert_error(status, body, 403, "AUTH_004")
    messages = (await history_page(api, c, chat_id))["messages"]
    assert [(m["id"], m["deleted"]) for m in messages] == [(by_admin["id"], False), (by_b["id"], True)]


# outsiders


async def test_outsider_gets_the_same_404_as_for_a_missing_chat_or_message(api, make_user, pair):
    a, b, chat_id = pair
    outsider = await make_user()
    message = await rest_send(api, a, chat_id, "private words")

    async def both(method: str, real: str, missing: str, body=None) -> None:
        kwargs = {"json": body} if body is not None else {}
        status, foreign = await api.call(method, real, token=outsider.token, **kwargs)
        assert_error(status, foreign, 404, "MSG_002")
        status, absent = await api.call(method, missing, token=outsider.token, **kwargs)
        assert foreign == absent

    await both("GET", f"/messages/{chat_id}", f"/messages/{MISSING}")
    status, foreign = await api.post("/messages", token=outsider.token, json={"chatId": chat_id, "content": "x"})
    assert_error(status, foreign, 404, "MSG_002")
    status, absent = await api.post("/messages", token=outsider.token, json={"chatId": MISSING, "content": "x"})
    assert foreign == absent
    await both("PUT", f"/messages/{message['id']}", f"/messages/{MISSING}", {"content": "hijack"})
    await both("DELETE", f"/messages/{message['id']}", f"/messages/{MISSING}")

    data = await history_page(api, b, chat_id)
    assert [(m["content"], m["deleted"]) for m in data["messages"]] == [("private words", False)]


# delivery status


async def test_status_is_sent_until_the_other_member_reads(api, pair):
    a, b, chat_id = pair
    first = await rest_send(api, a, chat_id, "one")
    second = await rest_send(api, a, chat_id, "two")
    assert first["status"] == second["status"] == "sent"
    assert [m["status"] for m in (await history_page(api, a, chat_id))["messages"]] == ["sent", "sent"]
    # the sender reading their own chat changes nothing
    status, _ = await api.put(f"/chats/{chat_id}/read", token=a.token)
    assert status == 200
    assert [m["status"] for m in (await history_page(api, a, chat_id))["messages"]] == ["sent", "sent"]

    status, _ = await api.put(f"/chats/{chat_id}/read", token=b.token, json={"messageId": first["id"]})
    assert status == 200
    assert [m["status"] for m in (await history_page(api, a, chat_id))["messages"]] == ["sent", "read"]
    status, _ = await api.put(f"/chats/{chat_id}/read", token=b.token)
    assert status == 200
    assert [m["status"] for m in (await history_page(api, a, chat_id))["messages"]] == ["read", "read"]
    status, body = await api.get(f"/chats/{chat_id}", token=a.token)
    assert body["data"]["lastMessage"]["status"] == "read"
    # a later message starts over as sent; the clientId repeat reports the current status
    third = await rest_send(api, a, chat_id, "three", clientId="c3")
    assert third["status"] == "sent"
    status, body = await api.post(
        "/messages", token=a.token, json={"chatId": chat_id, "content": "x", "clientId": "c3"}
    )
    assert status == 200 and body["data"]["status"] == "sent"
    status, _ = await api.put(f"/chats/{chat_id}/read", token=b.token)
    status, body = await api.post(
        "/messages", token=a.token, json={"chatId": chat_id, "content": "x", "clientId": "c3"}
    )
    assert status == 200 and body["data"]["status"] == "read"
