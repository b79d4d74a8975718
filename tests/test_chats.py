"""`/chats` over REST: private pairs, groups, the list, per-user flags, unread counts, read marks, blocks."""

from __future__ import annotations

import asyncio

import pytest

from tests.chat_support import MISSING, rest_send
from tests.rest_support import assert_error

pytestmark = pytest.mark.backends  # each test runs on SQLite and on FerretDB (tests/conftest.py)


async def private(api, me, other, status: int = 201) -> dict:
    code, body = await api.post("/chats", token=me.token, json={"type": "private", "participants": [other.id]})
    assert code == status, body
    return body["data"]


async def group(api, me, others, name: str = "crew") -> dict:
    code, body = await api.post(
        "/chats", token=me.token, json={"type": "group", "name": name, "participants": [o.id for o in others]}
    )
    assert code == 201, body
    return body["data"]


async def chat_of(api, me, chat_id: str) -> dict:
    code, body = await api.get(f"/chats/{chat_id}", token=me.token)
    assert code == 200, body
    return body["data"]


async def listed(api, me, **params) -> list[dict]:
    code, body = await api.get("/chats", token=me.token, params=params)
    assert code == 200, body
    assert isinstance(body["data"], list), body
    return body["data"]


async def ids(api, me, **params) -> list[str]:
    return [c["id"] for c in await listed(api, me, **params)]


# creating private chats


async def test_private_chat_is_one_per_pair(api, make_user):
    a, b = await make_user(), await make_user()
    first = await private(api, a, b, 201)
    again = await private(api, a, b, 200)
    from_other_side = await private(api, b, a, 200)
    assert first["id"] == again["id"] == from_other_side["id"]
    assert first["type"] == "private"
    assert sorted(p["id"] for p in first["participants"]) == sorted([a.id, b.id])
    assert await ids(api, a) == [first["id"]]
    assert await ids(api, b) == [first["id"]]


async def test_concurrent_creates_all_succeed_and_a_pair_still_gets_one_chat(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    doomed = await group(api, a, [b], name="doomed")
    answers = await asyncio.gather(
        api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]}),
        api.post("/chats", token=b.token, json={"type": "private", "participants": [a.id]}),
        api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]}),
        api.delete(f"/chats/{doomed['id']}", token=a.token),
        *[api.post("/groups", token=c.token, json={"name": f"g{n}", "participants": [a.id]}) for n in range(8)],
    )
    pair, deleted, groups = answers[:3], answers[3], answers[4:]
    assert sorted(status for status, _ in pair) == [200, 200, 201], pair
    assert len({body["data"]["id"] for _, body in pair}) == 1
    assert deleted[0] == 200, deleted
    assert [status for status, _ in groups] == [201] * 8, groups
    chats = await listed(api, a, limit=100)
    assert len(chats) == 9 and doomed["id"] not in {x["id"] for x in chats}
    assert sorted(x["name"] for x in chats if x["type"] == "group") == [f"g{n}" for n in range(8)]
    assert all(len(x["participants"]) == 2 for x in chats)
    status, body = await api.get(f"/chats/{doomed['id']}", token=b.token)
    assert_error(status, body, 404, "MSG_002")


@pytest.mark.parametrize(
    "participants",
    [
        [],
        "two",
        None,
        ["not-an-id"],
        ["two others"],
    ],
)
async def test_private_chat_needs_exactly_one_other_user(api, make_user, participants):
    a, b, c = await make_user(), await make_user(), await make_user()
    if participants == ["two others"]:
        participants = [b.id, c.id]
    elif participants == "two":
        participants = {"b": b.id}
    body = {"type": "private"}
    if participants is not None:
        body["participants"] = participants
    status, answer = await api.post("/chats", token=a.token, json=body)
    assert_error(status, answer, 422, "VAL_001")
    assert await ids(api, a) == []


async def test_private_chat_with_unknown_user_is_404_and_with_yourself_422(api, make_user):
    a = await make_user()
    status, body = await api.post("/chats", token=a.token, json={"type": "private", "participants": [MISSING]})
    assert_error(status, body, 404, "AUTH_002")
    status, body = await api.post("/chats", token=a.token, json={"type": "private", "participants": [a.id]})
    assert_error(status, body, 422, "VAL_001")
    status, body = await api.post("/chats", token=a.token, json={"type": "channel", "participants": [a.id]})
    assert_error(status, body, 422, "VAL_001")
    assert await ids(api, a) == []


async def test_private_chat_is_named_after_the_other_user_for_each_viewer(api, make_user):
    a, b = await make_user(), await make_user()
    chat = await private(api, a, b)
    assert chat["name"] == b.username
    assert (await chat_of(api, a, chat["id"]))["name"] == b.username
    assert (await chat_of(api, b, chat["id"]))["name"] == a.username
    assert (await listed(api, a))[0]["name"] == b.username
    assert (await listed(api, b))[0]["name"] == a.username


# groups through /chats


async def test_group_through_chats_needs_a_name(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    status, body = await api.post("/chats", token=a.token, json={"type": "group", "participants": [b.id, c.id]})
    assert_error(status, body, 422, "VAL_001")
    assert "name" in body["error"]["details"]
    assert await ids(api, a) == []
    chat = await group(api, a, [b, c], name="Team")
    assert chat["type"] == "group" and chat["name"] == "Team"
    roles = {p["id"]: p["role"] for p in chat["participants"]}
    assert roles == {a.id: "admin", b.id: "member", c.id: "member"}
    assert (await chat_of(api, c, chat["id"]))["name"] == "Team"


# the list


async def test_list_is_newest_activity_first_with_pagination_beside_data(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    old = await private(api, a, b)
    middle = await private(api, a, c)
    new = await group(api, a, [b, c])
    status, body = await api.get("/chats", token=a.token)
    assert status == 200 and body["success"] is True
    assert [x["id"] for x in body["data"]] == [new["id"], middle["id"], old["id"]]
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 3, "pages": 1}

    await rest_send(api, b, old["id"], "bump")
    assert await ids(api, a) == [old["id"], new["id"], middle["id"]]
    assert await ids(api, b) == [old["id"], new["id"]]
    await rest_send(api, c, middle["id"], "bump again")
    assert await ids(api, a) == [middle["id"], old["id"], new["id"]]

    status, body = await api.get("/chats", token=a.token, params={"limit": 2, "page": 2})
    assert status == 200
    assert [x["id"] for x in body["data"]] == [new["id"]]
    assert body["pagination"] == {"page": 2, "limit": 2, "total": 3, "pages": 2}
    for params in ({"page": 0}, {"limit": 0}, {"limit": 101}, {"page": "x"}):
        status, body = await api.get("/chats", token=a.token, params=params)
        assert_error(status, body, 422, "VAL_001")


async def test_order_follows_activity_even_within_one_millisecond(api, make_user, monkeypatch):
    """Everything below happens at the same clock reading: activity order must still hold."""
    a, b, c = await make_user(), await make_user(), await make_user()
    frozen = "2030-01-01T00:00:00.000Z"
    monkeypatch.setattr("models.chats.now_iso", lambda: frozen)
    monkeypatch.setattr("models.messages.now_iso", lambda: frozen)
    monkeypatch.setattr("models.messages.id_time", lambda _: frozen)  # a message's time is its id's
    old = await private(api, a, b)
    new = await private(api, a, c)
    assert await ids(api, a) == [new["id"], old["id"]]
    await rest_send(api, b, old["id"])
    assert await ids(api, a) == [old["id"], new["id"]]
    await rest_send(api, c, new["id"])
    assert await ids(api, a) == [new["id"], old["id"]]


# per-user flags


@pytest.mark.parametrize("flag", ["archive", "mute"])
async def test_flags_are_the_callers_own(api, make_user, flag):
    a, b = await make_user(), await make_user()
    chat = await private(api, a, b)
    other = await group(api, a, [b])
    key = {"archive": "archived", "mute": "muted"}[flag]

    status, body = await api.post(f"/chats/{chat['id']}/{flag}", token=a.token)
    assert status == 200, body
    assert body["data"]["settings"][key] is True
    assert (await chat_of(api, a, chat["id"]))["settings"] == {
        "muted": key == "muted",
        "archived": key == "archived",
    }
    assert (await chat_of(api, b, chat["id"]))["settings"] == {"muted": False, "archived": False}
    assert (await chat_of(api, a, other["id"]))["settings"] == {"muted": False, "archived": False}
    # setting it twice is harmless
    status, _ = await api.post(f"/chats/{chat['id']}/{flag}", token=a.token)
    assert status == 200

    if flag == "archive":
        assert await ids(api, a) == [other["id"]]
        assert await ids(api, a, archived="true") == [chat["id"]]
        assert await ids(api, b) == [other["id"], chat["id"]]
        assert await ids(api, b, archived="true") == []
    else:
        assert await ids(api, a) == [other["id"], chat["id"]]

    status, body = await api.delete(f"/chats/{chat['id']}/{flag}", token=a.token)
    assert status == 200, body
    assert body["data"]["settings"] == {"muted": False, "archived": False}
    assert (await chat_of(api, a, chat["id"]))["settings"] == {"muted": False, "archived": False}
    assert await ids(api, a) == [other["id"], chat["id"]]
    assert await ids(api, a, archived="true") == []

    # the other member's flag is not touched by the first one's changes
    await api.post(f"/chats/{chat['id']}/{flag}", token=b.token)
    await api.delete(f"/chats/{chat['id']}/{flag}", token=a.token)
    assert (await chat_of(api, b, chat["id"]))["settings"][key] is True
    assert (await chat_of(api, a, chat["id"]))["settings"][key] is False


# last message and unread counts


async def unread(api, me, chat_id: str) -> int:
    return (await chat_of(api, me, chat_id))["unreadCount"]


async def test_last_message_and_unread_count_are_per_user(api, make_user):
    a, b = await make_user(), await make_user()
    chat = await private(api, a, b)
    assert (await chat_of(api, a, chat["id"]))["lastMessage"] is None
    assert await unread(api, a, chat["id"]) == 0

    sent = [await rest_send(api, b, chat["id"], f"from b {n}") for n in range(3)]
    assert await unread(api, a, chat["id"]) == 3
    assert await unread(api, b, chat["id"]) == 0  # own messages never count
    last = (await chat_of(api, a, chat["id"]))["lastMessage"]
    assert last["id"] == sent[-1]["id"] and last["content"] == "from b 2" and last["senderId"] == b.id

    mine = await rest_send(api, a, chat["id"], "from a")
    assert await unread(api, a, chat["id"]) == 3
    assert await unread(api, b, chat["id"]) == 1
    in_list = (await listed(api, a))[0]
    assert in_list["lastMessage"]["id"] == mine["id"] and in_list["unreadCount"] == 3

    # a tombstone is not something to read
    status, body = await api.delete(f"/messages/{sent[0]['id']}", token=b.token)
    assert status == 200, body
    assert await unread(api, a, chat["id"]) == 2


async def test_unread_count_in_groups_counts_every_other_sender(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    chat = await group(api, a, [b, c])
    await rest_send(api, b, chat["id"])
    await rest_send(api, c, chat["id"])
    await rest_send(api, a, chat["id"])
    assert await unread(api, a, chat["id"]) == 2
    assert await unread(api, b, chat["id"]) == 2
    assert await unread(api, c, chat["id"]) == 2


async def test_mark_read_up_to_a_message_or_all(api, make_user):
    a, b = await make_user(), await make_user()
    chat = await private(api, a, b)
    elsewhere = await group(api, a, [b])
    foreign = await rest_send(api, b, elsewhere["id"])
    sent = [await rest_send(api, b, chat["id"], f"m{n}") for n in range(3)]
    assert await unread(api, a, chat["id"]) == 3

    status, body = await api.put(f"/chats/{chat['id']}/read", token=a.token, json={"messageId": sent[1]["id"]})
    assert status == 200, body
    assert body["data"]["unreadCount"] == 1 and body["data"]["messageId"] == sent[1]["id"]
    assert await unread(api, a, chat["id"]) == 1
    assert await unread(api, b, chat["id"]) == 0

    # a mark never moves back
    status, body = await api.put(f"/chats/{chat['id']}/read", token=a.token, json={"messageId": sent[0]["id"]})
    assert status == 200 and body["data"]["unreadCount"] == 1

    for bad in (foreign["id"], MISSING):
        status, body = await api.put(f"/chats/{chat['id']}/read", token=a.token, json={"messageId": bad})
        assert_error(status, body, 422, "VAL_001")
    assert await unread(api, a, chat["id"]) == 1

    status, body = await api.put(f"/chats/{chat['id']}/read", token=a.token)
    assert status == 200, body
    assert body["data"]["unreadCount"] == 0
    assert await unread(api, a, chat["id"]) == 0
    assert await unread(api, a, elsewhere["id"]) == 1  # other chats keep their count

    await rest_send(api, b, chat["id"], "later")
    assert await unread(api, a, chat["id"]) == 1
    status, body = await api.put(f"/chats/{chat['id']}/read", token=a.token, json={})
    assert status == 200 and body["data"]["unreadCount"] == 0


# changing and deleting


async def test_private_chat_cannot_be_renamed(api, make_user):
    a, b = await make_user(), await make_user()
    chat = await private(api, a, b)
    status, body = await api.put(f"/chats/{chat['id']}", token=a.token, json={"name": "ours"})
    assert_error(status, body, 403, "AUTH_004")
    assert (await chat_of(api, a, chat["id"]))["name"] == b.username


async def test_only_group_admins_rename_or_delete_through_chats(api, make_user):
    a, b = await make_user(), await make_user()
    chat = await group(api, a, [b])
    status, body = await api.put(f"/chats/{chat['id']}", token=b.token, json={"name": "mine"})
    assert_error(status, body, 403, "AUTH_004")
    status, body = await api.put(f"/chats/{chat['id']}", token=a.token, json={"name": "ours", "description": "d"})
    assert status == 200, body
    seen = await chat_of(api, b, chat["id"])
    assert seen["name"] == "ours" and seen["description"] == "d"
    status, body = await api.delete(f"/chats/{chat['id']}", token=b.token)
    assert_error(status, body, 403, "AUTH_004")
    assert await ids(api, b) == [chat["id"]]
    status, body = await api.delete(f"/chats/{chat['id']}", token=a.token)
    assert status == 200, body
    assert await ids(api, a) == [] and await ids(api, b) == []


async def test_deleting_a_private_chat_removes_it_for_both(api, make_user):
    a, b = await make_user(), await make_user()
    chat = await private(api, a, b)
    message = await rest_send(api, a, chat["id"])
    status, body = await api.delete(f"/chats/{chat['id']}", token=b.token)
    assert status == 200, body
    for who in (a, b):
        status, body = await api.get(f"/chats/{chat['id']}", token=who.token)
        assert_error(status, body, 404, "MSG_002")
        assert await ids(api, who) == []
        status, body = await api.get(f"/messages/{chat['id']}", token=who.token)
        assert_error(status, body, 404, "MSG_002")
    status, body = await api.put(f"/messages/{message['id']}", token=a.token, json={"content": "x"})
    assert_error(status, body, 404, "MSG_002")
    again = await private(api, a, b, 201)
    assert again["id"] != chat["id"]


# outsiders


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"name": "taken over"}),
        ("DELETE", "", None),
        ("POST", "/archive", None),
        ("DELETE", "/archive", None),
        ("POST", "/mute", None),
        ("DELETE", "/mute", None),
        ("PUT", "/read", None),
        ("PUT", "/read", {"messageId": MISSING}),
    ],
)
@pytest.mark.parametrize("kind", ["private", "group"])
async def test_outsider_gets_the_same_404_as_for_a_missing_chat(api, make_user, method, suffix, body, kind):
    a, b, outsider = await make_user(), await make_user(), await make_user()
    chat = await private(api, a, b) if kind == "private" else await group(api, a, [b])
    await rest_send(api, a, chat["id"])
    kwargs = {"json": body} if body is not None else {}
    status, foreign = await api.call(method, f"/chats/{chat['id']}{suffix}", token=outsider.token, **kwargs)
    assert_error(status, foreign, 404, "MSG_002")
    status, missing = await api.call(method, f"/chats/{MISSING}{suffix}", token=outsider.token, **kwargs)
    assert_error(status, missing, 404, "MSG_002")
    assert foreign == missing
    # and nothing changed for the members
    seen = await chat_of(api, a, chat["id"])
    assert seen["settings"] == {"muted": False, "archived": False}
    assert seen["name"] == (b.username if kind == "private" else "crew")
    assert await unread(api, b, chat["id"]) == 1
    assert await ids(api, outsider) == []


async def test_chats_need_a_token(api):
    for method, path in (("GET", "/chats"), ("POST", "/chats"), ("GET", f"/chats/{MISSING}")):
        status, body = await api.call(method, path)
        assert_error(status, body, 401, "AUTH_001")


# blocks


async def test_blocked_user_cannot_open_a_private_chat_until_unblocked(api, make_user):
    a, b = await make_user(), await make_user()
    status, body = await api.post(f"/users/{a.id}/block", token=b.token)
    assert status == 200, body
    status, body = await api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]})
    assert_error(status, body, 403, "AUTH_004")
    assert await ids(api, a) == [] and await ids(api, b) == []
    status, body = await api.delete(f"/users/{a.id}/block", token=b.token)
    assert status == 200, body
    chat = await private(api, a, b, 201)
    assert await ids(api, b) == [chat["id"]]


async def test_blocked_user_cannot_send_into_an_existing_chat_until_unblocked(api, make_user):
    a, b = await make_user(), await make_user()
    chat = await private(api, a, b)
    await rest_send(api, a, chat["id"], "before")
    status, body = await api.post(f"/users/{a.id}/block", token=b.token)
    assert status == 200, body
    status, body = await api.post("/messages", token=a.token, json={"chatId": chat["id"], "content": "blocked"})
    assert_error(status, body, 403, "AUTH_004")
    status, body = await api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]})
    assert_error(status, body, 403, "AUTH_004")
    status, body = await api.get(f"/messages/{chat['id']}", token=b.token)
    assert [m["content"] for m in body["data"]["messages"]] == ["before"]
    assert await unread(api, b, chat["id"]) == 1
    status, body = await api.delete(f"/users/{a.id}/block", token=b.token)
    assert status == 200, body
    await rest_send(api, a, chat["id"], "after")
    assert await unread(api, b, chat["id"]) == 2
