"""`/groups` over REST: who may change a group, adding and removing members, and keeping an admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.clock import iso
from tests.chat_support import MISSING, connect, new_group, rest_send
from tests.rest_support import assert_error

pytestmark = pytest.mark.backends  # each test runs on SQLite and on FerretDB (tests/conftest.py)


@pytest.fixture
def ticking(monkeypatch):
    """Each reading of the chats clock is a later millisecond, so who joined first is never a tie."""
    last = [datetime.now(UTC)]

    def tick() -> str:
        last[0] = max(datetime.now(UTC), last[0] + timedelta(milliseconds=1))
        return iso(last[0])

    monkeypatch.setattr("models.chats.now_iso", tick)


async def group_of(api, me, group_id: str) -> dict:
    status, body = await api.get(f"/groups/{group_id}", token=me.token)
    assert status == 200, body
    return body["data"]


async def roles(api, me, group_id: str) -> dict[str, str]:
    return {p["id"]: p["role"] for p in (await group_of(api, me, group_id))["participants"]}


async def add(api, me, group_id: str, *users) -> tuple[int, dict]:
    return await api.post(f"/groups/{group_id}/participants", token=me.token, json={"userIds": [u.id for u in users]})


async def set_role(api, me, group_id: str, user, role: str) -> tuple[int, dict]:
    return await api.put(f"/groups/{group_id}/participants/{user.id}/role", token=me.token, json={"role": role})


async def group_ids(api, me) -> list[str]:
    status, body = await api.get("/groups", token=me.token)
    assert status == 200, body
    return [g["id"] for g in body["data"]]


async def assert_gone_for(api, who, group_id: str) -> None:
    """What a non-member sees: the 404 a chat that does not exist gives, everywhere."""
    for method, path, body in (
        ("GET", f"/groups/{group_id}", None),
        ("GET", f"/chats/{group_id}", None),
        ("GET", f"/messages/{group_id}", None),
        ("POST", "/messages", {"chatId": group_id, "content": "still here?"}),
        ("PUT", f"/chats/{group_id}/read", None),
        ("POST", f"/groups/{group_id}/leave", None),
    ):
        kwargs = {"json": body} if body is not None else {}
        status, answer = await api.call(method, path, token=who.token, **kwargs)
        assert_error(status, answer, 404, "MSG_002")
    assert group_id not in await group_ids(api, who)


# creating and listing


async def test_create_group_makes_the_creator_admin(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    status, body = await api.post(
        "/groups",
        token=a.token,
        json={"name": "Team", "description": "we", "participants": [b.id, c.id, b.id, a.id]},
    )
    assert status == 201, body
    data = body["data"]
    assert data["type"] == "group" and data["name"] == "Team" and data["description"] == "we"
    assert {p["id"]: p["role"] for p in data["participants"]} == {a.id: "admin", b.id: "member", c.id: "member"}
    assert data["participantCount"] == 3 and data["role"] == "admin"
    for p in data["participants"]:
        assert {"id", "username", "avatar", "role", "joinedAt"} <= set(p)
    seen = await group_of(api, c, data["id"])
    assert seen["id"] == data["id"] and seen["role"] == "member"
    # the group id is the chat id
    status, body = await api.get(f"/chats/{data['id']}", token=b.token)
    assert status == 200 and body["data"]["type"] == "group"


async def test_create_group_with_an_unknown_participant_creates_nothing(api, make_user):
    a, b = await make_user(), await make_user()
    status, body = await api.post("/groups", token=a.token, json={"name": "x", "participants": [b.id, MISSING]})
    assert_error(status, body, 404, "AUTH_002")
    assert await group_ids(api, a) == [] and await group_ids(api, b) == []
    for bad in ({"participants": [b.id]}, {"name": "", "participants": [b.id]}, {"name": "x"}):
        status, body = await api.post("/groups", token=a.token, json=bad)
        assert_error(status, body, 422, "VAL_001")
    assert await group_ids(api, a) == []


async def test_list_groups_has_only_groups_with_role_count_and_unread(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    status, _ = await api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]})
    assert status == 201
    first = await new_group(api, a, [b, c])
    second = await new_group(api, b, [a])
    for n in range(2):
        status, _ = await api.post("/messages", token=b.token, json={"chatId": first["id"], "content": f"m{n}"})
        assert status == 201

    status, body = await api.get("/groups", token=a.token)
    assert status == 200, body
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 2, "pages": 1}
    by_id = {g["id"]: g for g in body["data"]}
    assert list(by_id) == [first["id"], second["id"]]  # newest activity first
    assert all(g["type"] == "group" for g in body["data"])
    assert (by_id[first["id"]]["role"], by_id[first["id"]]["participantCount"]) == ("admin", 3)
    assert by_id[first["id"]]["unreadCount"] == 2
    assert (by_id[second["id"]]["role"], by_id[second["id"]]["participantCount"]) == ("member", 2)
    assert by_id[second["id"]]["unreadCount"] == 0

    status, body = await api.get("/groups", token=c.token)
    assert [(g["id"], g["role"], g["unreadCount"]) for g in body["data"]] == [(first["id"], "member", 2)]


async def test_a_private_chat_is_not_a_group(api, make_user):
    a, b = await make_user(), await make_user()
    status, body = await api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]})
    chat_id = body["data"]["id"]
    for method, path, payload in (
        ("GET", f"/groups/{chat_id}", None),
        ("PUT", f"/groups/{chat_id}", {"name": "x"}),
        ("DELETE", f"/groups/{chat_id}", None),
        ("POST", f"/groups/{chat_id}/participants", {"userIds": [b.id]}),
        ("POST", f"/groups/{chat_id}/leave", None),
    ):
        kwargs = {"json": payload} if payload is not None else {}
        status, answer = await api.call(method, path, token=a.token, **kwargs)
        assert_error(status, answer, 404, "MSG_002")
    status, body = await api.get(f"/chats/{chat_id}", token=b.token)
    assert status == 200 and len(body["data"]["participants"]) == 2


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("GET", "", None),
        ("PUT", "", {"name": "mine"}),
        ("DELETE", "", None),
        ("POST", "/participants", {"userIds": ["member"]}),
        ("DELETE", "/participants/member", None),
        ("PUT", "/participants/member/role", {"role": "member"}),
        ("POST", "/leave", None),
    ],
)
async def test_outsider_gets_the_same_404_as_for_a_missing_group(api, make_user, method, suffix, payload):
    a, b, outsider = await make_user(), await make_user(), await make_user()
    group = await new_group(api, a, [b])
    suffix = suffix.replace("member", b.id)
    if payload and payload.get("userIds"):
        payload = {"userIds": [outsider.id]}
    kwargs = {"json": payload} if payload is not None else {}
    status, foreign = await api.call(method, f"/groups/{group['id']}{suffix}", token=outsider.token, **kwargs)
    assert_error(status, foreign, 404, "MSG_002")
    status, missing = await api.call(method, f"/groups/{MISSING}{suffix}", token=outsider.token, **kwargs)
    assert foreign == missing
    seen = await group_of(api, a, group["id"])
    assert seen["name"] == "crew"
    assert {p["id"]: p["role"] for p in seen["participants"]} == {a.id: "admin", b.id: "member"}


# admin rights


async def test_only_admins_rename(api, make_user):
    a, b = await make_user(), await make_user()
    group = await new_group(api, a, [b])
    status, body = await api.put(f"/groups/{group['id']}", token=b.token, json={"name": "mine"})
    assert_error(status, body, 403, "AUTH_004")
    assert body["message"] == "Only group admins may rename or change the group", body
    assert (await group_of(api, a, group["id"]))["name"] == "crew"
    status, body = await api.put(
        f"/groups/{group['id']}", token=a.token, json={"name": "renamed", "description": "about"}
    )
    assert status == 200, body
    assert body["data"]["name"] == "renamed"
    seen = await group_of(api, b, group["id"])
    assert (seen["name"], seen["description"]) == ("renamed", "about")
    status, body = await api.put(f"/groups/{group['id']}", token=a.token, json={"name": ""})
    assert_error(status, body, 422, "VAL_001")


async def test_only_admins_change_roles(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    group = await new_group(api, a, [b, c])
    status, body = await set_role(api, b, group["id"], b, "admin")
    assert_error(status, body, 403, "AUTH_004")
    status, body = await set_role(api, b, group["id"], c, "admin")
    assert_error(status, body, 403, "AUTH_004")
    assert await roles(api, a, group["id"]) == {a.id: "admin", b.id: "member", c.id: "member"}

    status, body = await set_role(api, a, group["id"], b, "admin")
    assert status == 200, body
    assert body["data"] == {"userId": b.id, "role": "admin"}
    assert await roles(api, c, group["id"]) == {a.id: "admin", b.id: "admin", c.id: "member"}
    # the new admin has the rights now
    status, body = await api.put(f"/groups/{group['id']}", token=b.token, json={"name": "b's"})
    assert status == 200, body

    status, body = await set_role(api, a, group["id"], c, "owner")
    assert_error(status, body, 422, "VAL_001")
    outsider = await make_user()
    status, body = await set_role(api, a, group["id"], outsider, "admin")
    assert_error(status, body, 404, "AUTH_002")
    assert outsider.id not in await roles(api, a, group["id"])


@pytest.mark.parametrize("demoting_the_only_admin", [False, True])
async def test_one_role_change_is_one_chat_updated(api, make_user, sockets, demoting_the_only_admin):
    """Also when the only admin steps down and the longest-standing other is promoted with it."""
    a, b = await make_user(), await make_user()
    group = await new_group(api, a, [b])
    watcher = await connect(sockets, b)
    who, role = (a, "member") if demoting_the_only_admin else (b, "admin")
    status, body = await set_role(api, a, group["id"], who, role)
    assert status == 200, body
    marker = await rest_send(api, a, group["id"], "marker")  # the same room delivers it after any chat_updated
    assert (await watcher.seen.wait_for("new_message"))[-1]["id"] == marker["id"]

    updates = watcher.seen.of("chat_updated")
    assert len(updates) == 1, updates
    assert {p["id"]: p["role"] for p in updates[0]["participants"]} == {a.id: role, b.id: "admin"}


async def test_only_admins_remove_others(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    group = await new_group(api, a, [b, c])
    status, body = await api.delete(f"/groups/{group['id']}/participants/{c.id}", token=b.token)
    assert_error(status, body, 403, "AUTH_004")
    assert c.id in await roles(api, a, group["id"])

    status, body = await api.delete(f"/groups/{group['id']}/participants/{c.id}", token=a.token)
    assert status == 200, body
    assert await roles(api, b, group["id"]) == {a.id: "admin", b.id: "member"}
    assert (await group_of(api, a, group["id"]))["participantCount"] == 2
    await assert_gone_for(api, c, group["id"])

    status, body = await api.delete(f"/groups/{group['id']}/participants/{c.id}", token=a.token)
    assert_error(status, body, 404, "AUTH_002")


async def test_removed_member_loses_their_old_messages_too(api, make_user):
    a, b = await make_user(), await make_user()
    group = await new_group(api, a, [b])
    status, body = await api.post("/messages", token=b.token, json={"chatId": group["id"], "content": "mine"})
    message_id = body["data"]["id"]
    status, _ = await api.delete(f"/groups/{group['id']}/participants/{b.id}", token=a.token)
    assert status == 200
    status, body = await api.put(f"/messages/{message_id}", token=b.token, json={"content": "edited"})
    assert_error(status, body, 404, "MSG_002")
    status, body = await api.delete(f"/messages/{message_id}", token=b.token)
    assert_error(status, body, 404, "MSG_002")
    status, body = await api.get(f"/messages/{group['id']}", token=a.token)
    assert [m["content"] for m in body["data"]["messages"]] == ["mine"]


async def test_only_admins_delete_the_group(api, make_user):
    a, b = await make_user(), await make_user()
    group = await new_group(api, a, [b])
    status, body = await api.delete(f"/groups/{group['id']}", token=b.token)
    assert_error(status, body, 403, "AUTH_004")
    assert await group_ids(api, b) == [group["id"]]
    status, body = await api.delete(f"/groups/{group['id']}", token=a.token)
    assert status == 200, body
    for who in (a, b):
        await assert_gone_for(api, who, group["id"])


# adding members


async def test_any_member_adds_members_and_existing_ones_are_not_added_twice(api, make_user):
    a, b, c, d = await make_user(), await make_user(), await make_user(), await make_user()
    group = await new_group(api, a, [b])
    status, body = await add(api, b, group["id"], c)
    assert status == 200, body
    added = body["data"]["addedParticipants"]
    assert [(p["id"], p["username"], p["role"]) for p in added] == [(c.id, c.username, "member")]
    assert await group_ids(api, c) == [group["id"]]

    status, body = await add(api, c, group["id"], a, b, c)
    assert status == 200, body
    assert body["data"]["addedParticipants"] == []
    status, body = await add(api, c, group["id"], b, d, d)
    assert [p["id"] for p in body["data"]["addedParticipants"]] == [d.id]
    seen = await group_of(api, a, group["id"])
    assert seen["participantCount"] == 4
    assert sorted(p["id"] for p in seen["participants"]) == sorted([a.id, b.id, c.id, d.id])
    assert await roles(api, a, group["id"]) == {a.id: "admin", b.id: "member", c.id: "member", d.id: "member"}

    status, body = await api.post(f"/groups/{group['id']}/participants", token=a.token, json={"userIds": [MISSING]})
    assert_error(status, body, 404, "AUTH_002")
    for bad in ({"userIds": []}, {"userIds": ["x"]}, {}):
        status, body = await api.post(f"/groups/{group['id']}/participants", token=a.token, json=bad)
        assert_error(status, body, 422, "VAL_001")
    assert (await group_of(api, a, group["id"]))["participantCount"] == 4


async def test_only_admins_add_when_the_group_says_so(api, make_user):
    a, b, c, d = await make_user(), await make_user(), await make_user(), await make_user()
    group = await new_group(api, a, [b], onlyAdminsCanAdd=True)
    assert group["onlyAdminsCanAdd"] is True
    status, body = await add(api, b, group["id"], c)
    assert_error(status, body, 403, "AUTH_004")
    assert c.id not in await roles(api, a, group["id"])
    status, body = await add(api, a, group["id"], c)
    assert status == 200 and [p["id"] for p in body["data"]["addedParticipants"]] == [c.id]

    # an admin can open it up again, and close it
    status, body = await api.put(f"/groups/{group['id']}", token=a.token, json={"onlyAdminsCanAdd": False})
    assert status == 200, body
    status, body = await add(api, b, group["id"], d)
    assert status == 200 and [p["id"] for p in body["data"]["addedParticipants"]] == [d.id]
    status, body = await api.put(f"/groups/{group['id']}", token=b.token, json={"onlyAdminsCanAdd": True})
    assert_error(status, body, 403, "AUTH_004")


# leaving and keeping an admin


async def test_member_leaves(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    group = await new_group(api, a, [b, c])
    status, body = await api.post(f"/groups/{group['id']}/leave", token=b.token)
    assert status == 200, body
    await assert_gone_for(api, b, group["id"])
    assert await roles(api, a, group["id"]) == {a.id: "admin", c.id: "member"}
    # leaving through the participants path works as well
    status, body = await api.delete(f"/groups/{group['id']}/participants/{c.id}", token=c.token)
    assert status == 200, body
    assert await roles(api, a, group["id"]) == {a.id: "admin"}


async def test_only_admin_leaving_promotes_the_longest_standing_member(api, make_user, ticking):
    late = await make_user()  # registered first, so an id order would pick this one
    admin, early = await make_user(), await make_user()
    group = await new_group(api, admin, [early])
    status, _ = await add(api, early, group["id"], late)
    assert status == 200
    status, body = await api.post(f"/groups/{group['id']}/leave", token=admin.token)
    assert status == 200, body
    assert await roles(api, late, group["id"]) == {early.id: "admin", late.id: "member"}
    status, body = await api.put(f"/groups/{group['id']}", token=early.token, json={"name": "early's"})
    assert status == 200, body


async def test_only_admin_demoting_themself_promotes_the_longest_standing_other(api, make_user, ticking):
    late = await make_user()
    admin, early = await make_user(), await make_user()
    group = await new_group(api, admin, [early])
    status, _ = await add(api, admin, group["id"], late)
    assert status == 200
    status, body = await set_role(api, admin, group["id"], admin, "member")
    assert status == 200, body
    assert await roles(api, admin, group["id"]) == {admin.id: "member", early.id: "admin", late.id: "member"}
    # no longer an admin
    status, body = await api.put(f"/groups/{group['id']}", token=admin.token, json={"name": "x"})
    assert_error(status, body, 403, "AUTH_004")


async def test_demoting_one_of_two_admins_promotes_nobody(api, make_user, ticking):
    a, b, c = await make_user(), await make_user(), await make_user()
    group = await new_group(api, a, [b, c])
    status, _ = await set_role(api, a, group["id"], c, "admin")
    assert status == 200
    status, body = await set_role(api, a, group["id"], a, "member")
    assert status == 200, body
    assert await roles(api, b, group["id"]) == {a.id: "member", b.id: "member", c.id: "admin"}


async def test_admin_removing_the_only_other_admin_keeps_themself(api, make_user):
    a, b, c = await make_user(), await make_user(), await make_user()
    group = await new_group(api, a, [b, c])
    status, _ = await set_role(api, a, group["id"], b, "admin")
    assert status == 200
    status, _ = await api.delete(f"/groups/{group['id']}/participants/{b.id}", token=a.token)
    assert status == 200
    assert await roles(api, c, group["id"]) == {a.id: "admin", c.id: "member"}


async def test_group_is_gone_when_the_last_member_leaves(api, make_user):
    a, b = await make_user(), await make_user()
    group = await new_group(api, a, [b])
    status, _ = await api.post("/messages", token=a.token, json={"chatId": group["id"], "content": "bye"})
    assert status == 201
    status, _ = await api.post(f"/groups/{group['id']}/leave", token=a.token)
    assert status == 200
    assert await roles(api, b, group["id"]) == {b.id: "admin"}
    status, body = await api.post(f"/groups/{group['id']}/leave", token=b.token)
    assert status == 200, body
    for who in (a, b):
        await assert_gone_for(api, who, group["id"])
    # nobody can bring it back by adding to it
    status, body = await add(api, b, group["id"], a)
    assert_error(status, body, 404, "MSG_002")
