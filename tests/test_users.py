"""`/users`, blocks and `/status` over REST: the directory, admin rights, presence as others see it."""

from __future__ import annotations

import pytest

from server.keys import STORE
from tests.rest_support import assert_error

SEEN_AT = "2024-05-01T12:00:00.000Z"


async def _admin(server, make_user):
    admin = await make_user()
    await server.app[STORE].update_user(admin.id, {"role": "admin"})
    return admin


async def _register(api, username: str, email: str) -> dict:
    status, body = await api.post("/auth/register", json={"username": username, "email": email, "password": "Passw0rd"})
    assert status == 201, body
    return body["data"]


# the directory


async def test_list_users_is_paged(api, make_user):
    viewer = await make_user()
    names = [f"pgx_{n}" for n in range(5)]
    for name in names:
        await make_user(name)
    status, body = await api.get("/users", token=viewer.token, params={"search": "pgx_", "limit": 2})
    assert status == 200, body
    assert body["data"]["pagination"] == {"page": 1, "limit": 2, "total": 5, "pages": 3}
    seen = [u["username"] for u in body["data"]["users"]]
    for page in (2, 3):
        status, body = await api.get("/users", token=viewer.token, params={"search": "pgx_", "limit": 2, "page": page})
        assert body["data"]["pagination"] == {"page": page, "limit": 2, "total": 5, "pages": 3}
        seen += [u["username"] for u in body["data"]["users"]]
    assert sorted(seen) == names and len(seen) == 5
    # past the end: an empty page with the same totals
    status, body = await api.get("/users", token=viewer.token, params={"search": "pgx_", "limit": 2, "page": 4})
    assert status == 200 and body["data"]["users"] == [] and body["data"]["pagination"]["total"] == 5
    # defaults: page 1, limit 20, everyone
    status, body = await api.get("/users", token=viewer.token)
    assert body["data"]["pagination"] == {"page": 1, "limit": 20, "total": 6, "pages": 1}
    for user in body["data"]["users"]:
        assert not {key for key in user if "password" in key.lower() or "hash" in key.lower()}


async def test_search_by_username_or_email_ignores_case(api, make_user):
    viewer = await make_user()
    await _register(api, "MixedCase_Bob", "bob.b@example.com")
    await _register(api, "carol_x", "Zebra.Person@Mail.test")
    await _register(api, "dave_100", "dave@example.com")

    async def found(search: str) -> list[str]:
        status, body = await api.get("/users", token=viewer.token, params={"search": search})
        assert status == 200, body
        return sorted(u["username"] for u in body["data"]["users"])

    assert await found("mixedcase") == ["MixedCase_Bob"]
    assert await found("MIXEDCASE_b") == ["MixedCase_Bob"]
    assert await found("ZEBRA.person") == ["carol_x"]
    assert await found("mail.test") == ["carol_x"]
    assert await found("nobody-has-this") == []
    # LIKE wildcards are plain characters in a search
    assert await found("%") == []
    assert await found("dave_1") == ["dave_100"]
    assert await found("dave%1") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "abc"}, "page"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
async def test_list_users_rejects_out_of_range_paging(api, make_user, params, field):
    viewer = await make_user()
    status, body = await api.get("/users", token=viewer.token, params=params)
    assert_error(status, body, 422, "VAL_001")
    assert set(body["error"]["details"]) == {field}


async def test_list_users_accepts_the_limits(api, make_user):
    viewer = await make_user()
    for limit in ("1", "100"):
        status, body = await api.get("/users", token=viewer.token, params={"limit": limit})
        assert status == 200 and body["data"]["pagination"]["limit"] == int(limit)


async def test_get_user(api, make_user):
    alice, bob = await make_user(), await make_user()
    status, body = await api.get(f"/users/{bob.id}", token=alice.token)
    assert status == 200
    assert body["data"]["id"] == bob.id and body["data"]["username"] == bob.username
    assert body["data"]["presence"] == "offline"
    status, body = await api.get("/users/000000000000000000000000", token=alice.token)
    assert_error(status, body, 404, "AUTH_002")
    status, body = await api.get(f"/users/{bob.id}")
    assert_error(status, body, 401, "AUTH_001")


# admin rights


async def test_update_and_delete_need_an_admin(api, make_user):
    alice, bob = await make_user(), await make_user()
    status, body = await api.put(f"/users/{bob.id}", token=alice.token, json={"status": "hacked"})
    assert_error(status, body, 403, "AUTH_004")
    status, body = await api.put(f"/users/{alice.id}", token=alice.token, json={"role": "admin"})
    assert_error(status, body, 403, "AUTH_004")
    status, body = await api.delete(f"/users/{bob.id}", token=alice.token)
    assert_error(status, body, 403, "AUTH_004")
    status, body = await api.get(f"/users/{bob.id}", token=bob.token)
    assert body["data"]["status"] == "" and body["data"]["role"] == "user"
    status, body = await api.get(f"/users/{alice.id}", token=alice.token)
    assert body["data"]["role"] == "user"


async def test_admin_updates_a_user(api, server, make_user):
    admin, bob, carol = await _admin(server, make_user), await make_user(), await make_user()
    status, body = await api.put(
        f"/users/{bob.id}", token=admin.token, json={"username": "bob_renamed", "status": "moderated", "role": "admin"}
    )
    assert status == 200, body
    assert body["data"]["username"] == "bob_renamed" and body["data"]["status"] == "moderated"
    assert body["data"]["role"] == "admin"
    status, me = await api.get("/auth/me", token=bob.token)
    assert me["data"]["username"] == "bob_renamed" and me["data"]["role"] == "admin"

    for change, field in (
        ({"username": "x"}, "username"),
        ({"role": "root"}, "role"),
        ({"status": "s" * 101}, "status"),
    ):
        status, body = await api.put(f"/users/{bob.id}", token=admin.token, json=change)
        assert_error(status, body, 422, "VAL_001")
        assert set(body["error"]["details"]) == {field}
    status, body = await api.put(f"/users/{bob.id}", token=admin.token, json={"username": carol.username})
    assert_error(status, body, 409, "RES_001")
    status, body = await api.put("/users/000000000000000000000000", token=admin.token, json={"status": "x"})
    assert_error(status, body, 404, "AUTH_002")


async def test_admin_deletes_a_user_and_their_tokens(api, server, make_user):
    admin, bob = await _admin(server, make_user), await make_user()
    status, body = await api.delete(f"/users/{bob.id}", token=admin.token)
    assert status == 200, body
    status, body = await api.get(f"/users/{bob.id}", token=admin.token)
    assert_error(status, body, 404, "AUTH_002")
    status, body = await api.get("/auth/me", token=bob.token)
    assert_error(status, body, 401, "AUTH_001")
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": bob.refresh_token})
    assert_error(status, body, 401, "AUTH_001")
    status, body = await api.post("/auth/login", json={"email": bob.email, "password": bob.password})
    assert_error(status, body, 401, "AUTH_003")
    status, body = await api.get("/users", token=admin.token, params={"search": bob.username})
    assert body["data"]["users"] == []
    # deleting again, or an unknown id
    status, body = await api.delete(f"/users/{bob.id}", token=admin.token)
    assert_error(status, body, 404, "AUTH_002")
    # an admin cannot delete themself
    status, body = await api.delete(f"/users/{admin.id}", token=admin.token)
    assert_error(status, body, 403, "AUTH_004")
    status, _ = await api.get("/auth/me", token=admin.token)
    assert status == 200


async def test_the_cli_function_makes_an_admin(api, server, config, make_user):
    from server.__main__ import create_admin

    bob = await make_user()
    message = await create_admin(config, bob.email.upper(), "ignored", "Ignored1")
    assert bob.email in message
    status, body = await api.get("/auth/me", token=bob.token)
    assert body["data"]["role"] == "admin"
    alice = await make_user()
    status, _ = await api.put(f"/users/{alice.id}", token=bob.token, json={"status": "set by admin"})
    assert status == 200


# blocks


async def test_block_and_unblock(api, make_user):
    alice, bob = await make_user(), await make_user()
    status, body = await api.post(f"/users/{bob.id}/block", token=alice.token)
    assert status == 200 and body["success"] is True
    status, _ = await api.post(f"/users/{bob.id}/block", token=alice.token)
    assert status == 200, "blocking twice is harmless"
    status, body = await api.delete(f"/users/{bob.id}/block", token=alice.token)
    assert status == 200 and body["success"] is True

    status, body = await api.post("/users/000000000000000000000000/block", token=alice.token)
    assert_error(status, body, 404, "AUTH_002")
    status, body = await api.delete("/users/000000000000000000000000/block", token=alice.token)
    assert_error(status, body, 404, "AUTH_002")
    status, body = await api.post(f"/users/{alice.id}/block", token=alice.token)
    assert_error(status, body, 403, "AUTH_004")
    status, body = await api.post(f"/users/{bob.id}/block")
    assert_error(status, body, 401, "AUTH_001")


async def test_a_blocked_user_does_not_see_the_blockers_presence(api, server, make_user, sockets):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await server.app[STORE].update_user(alice.id, {"last_seen": SEEN_AT})
    sock = await sockets(alice.token)
    await sock.seen.wait_for("authenticated")
    status, _ = await api.post(f"/users/{bob.id}/block", token=alice.token)
    assert status == 200

    async def alice_as_seen_by(token: str) -> dict:
        status, body = await api.get(f"/users/{alice.id}", token=token)
        assert status == 200
        return body["data"]

    seen = await alice_as_seen_by(carol.token)
    assert (seen["presence"], seen["lastSeen"]) == ("online", SEEN_AT)
    seen = await alice_as_seen_by(bob.token)
    assert (seen["presence"], seen["lastSeen"]) == ("offline", None)
    # the directory hides it the same way
    status, body = await api.get("/users", token=bob.token, params={"search": alice.username})
    (listed,) = body["data"]["users"]
    assert (listed["presence"], listed["lastSeen"]) == ("offline", None)
    # blocking is one way: alice still sees bob's details
    status, body = await api.get(f"/users/{bob.id}", token=alice.token)
    assert status == 200 and body["data"]["id"] == bob.id

    status, _ = await api.delete(f"/users/{bob.id}/block", token=alice.token)
    assert status == 200
    seen = await alice_as_seen_by(bob.token)
    assert (seen["presence"], seen["lastSeen"]) == ("online", SEEN_AT)


# presence settings


async def test_status_options_need_no_token(api):
    status, body = await api.get("/status")
    assert status == 200 and body["success"] is True
    assert [option["key"] for option in body["data"]] == ["online", "away", "busy", "invisible"]
    assert all(option["label"] and option["description"] for option in body["data"])


async def test_set_status(api, make_user):
    alice = await make_user()
    for setting in ("away", "busy", "invisible", "online"):
        status, body = await api.put("/status", token=alice.token, json={"status": setting})
        assert status == 200, body
        assert body["data"]["status"] == setting and body["data"]["updatedAt"].endswith("Z")
    for bad in ({"status": "offline"}, {"status": "ONLINE"}, {"status": ""}, {}):
        status, body = await api.put("/status", token=alice.token, json=bad)
        assert_error(status, body, 422, "VAL_001")
        assert set(body["error"]["details"]) == {"status"}
    status, body = await api.put("/status", json={"status": "away"})
    assert_error(status, body, 401, "AUTH_001")


async def test_presence_follows_the_setting_and_the_socket(api, server, make_user, sockets):
    alice, carol = await make_user(), await make_user()
    await server.app[STORE].update_user(alice.id, {"last_seen": SEEN_AT})

    async def presence(token: str) -> tuple[str, str | None]:
        status, body = await api.get(f"/users/{alice.id}", token=token)
        assert status == 200
        return body["data"]["presence"], body["data"]["lastSeen"]

    assert await presence(carol.token) == ("offline", SEEN_AT)
    sock = await sockets(alice.token)
    await sock.seen.wait_for("authenticated")
    assert await presence(carol.token) == ("online", SEEN_AT)

    status, _ = await api.put("/status", token=alice.token, json={"status": "busy"})
    assert await presence(carol.token) == ("busy", SEEN_AT)

    status, _ = await api.put("/status", token=alice.token, json={"status": "invisible"})
    assert status == 200
    assert await presence(carol.token) == ("offline", None)
    status, me = await api.get("/auth/me", token=alice.token)
    assert me["data"]["presence"] == "invisible"
    status, body = await api.get("/users", token=carol.token, params={"search": alice.username})
    assert body["data"]["users"][0]["presence"] == "offline"
