"""`/auth/*` over REST: registration rules, logins, token rotation and revocation, rate limits."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from server.config import Config
from tests.conftest import Api, start_server
from tests.rest_support import assert_error, raw, running

pytestmark = pytest.mark.backends  # each test runs on SQLite and on FerretDB (tests/conftest.py)

USER_FIELDS = {
    "id",
    "email",
    "username",
    "name",
    "phone",
    "avatar",
    "status",
    "presence",
    "lastSeen",
    "role",
    "createdAt",
    "updatedAt",
}


def _register_body(name: str, **overrides: object) -> dict[str, object]:
    return {"username": name, "email": f"{name}@example.com", "password": "Passw0rd", **overrides}


async def _login(api: Api, email: str, password: str) -> tuple[int, dict]:
    return await api.post("/auth/login", json={"email": email, "password": password})


# registration


async def test_register_answers_201_with_user_and_tokens(api):
    status, body = await api.post(
        "/auth/register",
        json={
            "username": "Reg_User1",
            "email": "Mixed.Case@Example.COM",
            "password": "Passw0rd",
            "phone": "13800138000",
        },
    )
    assert status == 201, body
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"user", "token", "refreshToken"}
    user = data["user"]
    assert set(user) == USER_FIELDS
    assert user["email"] == "mixed.case@example.com"
    assert user["username"] == "Reg_User1"
    assert user["phone"] == "13800138000"
    assert user["role"] == "user"
    assert user["createdAt"].endswith("Z")
    assert data["token"] and data["refreshToken"] and data["token"] != data["refreshToken"]
    assert not {key for key in user if "password" in key.lower() or "hash" in key.lower() or "token" in key.lower()}
    assert data["token"] not in str(user) and "Passw0rd" not in str(user)
    # the token works and the lower-cased email logs in, whatever case is typed
    status, me = await api.get("/auth/me", token=data["token"])
    assert status == 200 and me["data"]["id"] == user["id"]
    status, _ = await _login(api, "MIXED.case@example.com", "Passw0rd")
    assert status == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "ab"),
        ("username", "a" * 21),
        ("username", "has space"),
        ("username", "dash-ed"),
        ("username", "名字abc"),
        ("username", "new_line\n"),
        ("email", "not-an-email"),
        ("email", "a@"),
        ("password", "Ab1"),
        ("password", "alllower1"),
        ("password", "ALLUPPER1"),
        ("password", "NoDigitsHere"),
        ("phone", "12345"),
        ("phone", "12800138000"),
        ("phone", "138001380001"),
        ("phone", "+8613800138000"),
        ("phone", "13800138000\n"),
        ("phone", "1380013800\u0663"),
    ],
)
async def test_register_validation(api, field, value):
    status, body = await api.post("/auth/register", json=_register_body("valid_name", **{field: value}))
    assert_error(status, body, 422, "VAL_001")
    details = body["error"]["details"]
    assert set(details) == {field}, details
    assert all(isinstance(m, str) for m in details[field])


async def test_register_missing_fields_are_listed_each(api):
    status, body = await api.post("/auth/register", json={})
    assert_error(status, body, 422, "VAL_001")
    assert set(body["error"]["details"]) == {"username", "email", "password"}


@pytest.mark.parametrize("username", ["abc", "a" * 20, "Under_score_9"])
async def test_register_accepts_boundary_usernames(api, username):
    status, body = await api.post("/auth/register", json=_register_body(username))
    assert status == 201, body
    assert body["data"]["user"]["phone"] is None


async def test_register_duplicate_email_or_username_conflicts(api):
    status, _ = await api.post("/auth/register", json=_register_body("first_one"))
    assert status == 201
    # same email in another case
    status, body = await api.post("/auth/register", json=_register_body("second_one", email="FIRST_ONE@example.com"))
    assert_error(status, body, 409, "RES_001")
    assert "email" in body["error"]["details"]
    # same username
    status, body = await api.post("/auth/register", json=_register_body("first_one", email="other@example.com"))
    assert_error(status, body, 409, "RES_001")
    assert "username" in body["error"]["details"]


async def test_long_multibyte_password_counts_every_byte(api):
    password = "Aa1" + "密" * 63 + "码"  # 195 bytes of UTF-8, far over bcrypt's 72
    assert len(password.encode("utf-8")) > 72
    status, body = await api.post("/auth/register", json=_register_body("hanzi_user", password=password))
    assert status == 201, body
    status, _ = await _login(api, "hanzi_user@example.com", password)
    assert status == 200
    # differs only in the last character, well after byte 72
    near_miss = "Aa1" + "密" * 64
    assert near_miss.encode("utf-8")[:72] == password.encode("utf-8")[:72]
    status, body = await _login(api, "hanzi_user@example.com", near_miss)
    assert_error(status, body, 401, "AUTH_003")


# login and the current user


async def test_login_answers_user_and_tokens(api, make_user):
    alice = await make_user()
    status, body = await _login(api, alice.email, alice.password)
    assert status == 200
    assert set(body["data"]) == {"user", "token", "refreshToken"}
    assert body["data"]["user"]["id"] == alice.id
    assert set(body["data"]["user"]) == USER_FIELDS
    # a second login is a separate session: both tokens work
    for token in (alice.token, body["data"]["token"]):
        status, _ = await api.get("/auth/me", token=token)
        assert status == 200


async def test_login_unknown_email_and_wrong_password_look_the_same(api, make_user):
    alice = await make_user()
    unknown = await _login(api, "nobody@example.com", alice.password)
    wrong = await _login(api, alice.email, "Wrong0ne")
    for status, body in (unknown, wrong):
        assert_error(status, body, 401, "AUTH_003")
    assert unknown[1] == wrong[1]


async def test_login_validation(api):
    status, body = await api.post("/auth/login", json={"email": "a@example.com"})
    assert_error(status, body, 422, "VAL_001")
    assert set(body["error"]["details"]) == {"password"}


async def test_me(api, make_user):
    alice = await make_user()
    status, body = await api.get("/auth/me", token=alice.token)
    assert status == 200
    assert body["data"]["id"] == alice.id and body["data"]["email"] == alice.email
    assert set(body["data"]) == USER_FIELDS
    status, body = await api.get("/auth/me")
    assert_error(status, body, 401, "AUTH_001")


async def test_update_profile(api, make_user):
    alice, bob = await make_user(), await make_user()
    status, body = await api.put(
        "/auth/profile", token=alice.token, json={"username": "alice_new", "status": "忙碌中" + "x" * 97}
    )
    assert status == 200, body
    assert body["data"]["username"] == "alice_new"
    assert body["data"]["status"] == "忙碌中" + "x" * 97
    status, me = await api.get("/auth/me", token=alice.token)
    assert me["data"]["username"] == "alice_new" and len(me["data"]["status"]) == 100

    status, body = await api.put("/auth/profile", token=alice.token, json={"status": "y" * 101})
    assert_error(status, body, 422, "VAL_001")
    assert set(body["error"]["details"]) == {"status"}
    status, body = await api.put("/auth/profile", token=alice.token, json={"username": "no"})
    assert_error(status, body, 422, "VAL_001")
    assert set(body["error"]["details"]) == {"username"}

    status, body = await api.put("/auth/profile", token=alice.token, json={"username": bob.username})
    assert_error(status, body, 409, "RES_001")
    status, me = await api.get("/auth/me", token=alice.token)
    assert me["data"]["username"] == "alice_new"

    status, body = await api.put("/auth/profile", json={"status": "hi"})
    assert_error(status, body, 401, "AUTH_001")


# refresh tokens


async def test_refresh_rotates_the_pair(api, make_user):
    alice = await make_user()
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": alice.refresh_token})
    assert status == 200, body
    assert set(body["data"]) == {"token", "refreshToken"}
    new = body["data"]
    assert new["refreshToken"] != alice.refresh_token
    status, me = await api.get("/auth/me", token=new["token"])
    assert status == 200 and me["data"]["id"] == alice.id
    # the new refresh token rotates again
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": new["refreshToken"]})
    assert status == 200
    status, _ = await api.get("/auth/me", token=body["data"]["token"])
    assert status == 200


async def test_refresh_token_reuse_revokes_the_whole_login(api, make_user):
    alice = await make_user()
    other_login = (await _login(api, alice.email, alice.password))[1]["data"]
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": alice.refresh_token})
    assert status == 200
    newest = body["data"]

    status, body = await api.post("/auth/refresh-token", json={"refreshToken": alice.refresh_token})
    assert_error(status, body, 401, "AUTH_001")
    # every token of that login is now refused
    for token in (alice.token, newest["token"]):
        status, body = await api.get("/auth/me", token=token)
        assert_error(status, body, 401, "AUTH_001")
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": newest["refreshToken"]})
    assert_error(status, body, 401, "AUTH_001")
    # another login of the same user is untouched
    status, _ = await api.get("/auth/me", token=other_login["token"])
    assert status == 200


async def test_refresh_rejects_access_tokens_and_garbage(api, make_user):
    alice = await make_user()
    for token in (alice.token, "garbage", alice.refresh_token + "x"):
        status, body = await api.post("/auth/refresh-token", json={"refreshToken": token})
        assert_error(status, body, 401, "AUTH_001")
    # none of those attempts was treated as reuse: the real refresh token still works
    status, _ = await api.post("/auth/refresh-token", json={"refreshToken": alice.refresh_token})
    assert status == 200


# logout and passwords


async def test_logout_revokes_the_access_token_and_its_refresh_token(api, make_user):
    alice = await make_user()
    other = (await _login(api, alice.email, alice.password))[1]["data"]
    status, body = await api.post("/auth/logout", token=alice.token)
    assert status == 200 and body["success"] is True
    status, body = await api.get("/auth/me", token=alice.token)
    assert_error(status, body, 401, "AUTH_001")
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": alice.refresh_token})
    assert_error(status, body, 401, "AUTH_001")
    status, _ = await api.get("/auth/me", token=other["token"])
    assert status == 200
    status, body = await api.post("/auth/logout")
    assert_error(status, body, 401, "AUTH_001")


async def test_change_password(api, make_user):
    alice = await make_user()
    other = (await _login(api, alice.email, alice.password))[1]["data"]

    status, body = await api.put(
        "/auth/change-password", token=alice.token, json={"currentPassword": "Wrong0ne", "newPassword": "N3wPassword"}
    )
    assert_error(status, body, 401, "AUTH_003")
    status, _ = await api.get("/auth/me", token=other["token"])
    assert status == 200, "a failed change must not sign anyone out"

    status, body = await api.put(
        "/auth/change-password", token=alice.token, json={"currentPassword": alice.password, "newPassword": "weak"}
    )
    assert_error(status, body, 422, "VAL_001")
    assert set(body["error"]["details"]) == {"newPassword"}

    status, body = await api.put(
        "/auth/change-password",
        token=alice.token,
        json={"currentPassword": alice.password, "newPassword": "N3wPassword"},
    )
    assert status == 200, body
    # the caller's own login stays, every other is revoked
    status, _ = await api.get("/auth/me", token=alice.token)
    assert status == 200
    status, _ = await api.post("/auth/refresh-token", json={"refreshToken": alice.refresh_token})
    assert status == 200
    status, body = await api.get("/auth/me", token=other["token"])
    assert_error(status, body, 401, "AUTH_001")
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": other["refreshToken"]})
    assert_error(status, body, 401, "AUTH_001")
    # the new password works, the old does not
    status, body = await _login(api, alice.email, alice.password)
    assert_error(status, body, 401, "AUTH_003")
    status, _ = await _login(api, alice.email, "N3wPassword")
    assert status == 200


# revocation is stored, and so is the generated secret


async def test_revocation_and_secret_survive_a_restart(config: Config):
    srv = await start_server(config)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, srv.api)
            status, body = await api.post("/auth/register", json=_register_body("restart_me"))
            assert status == 201
            revoked = body["data"]["token"]
            status, body = await _login(api, "restart_me@example.com", "Passw0rd")
            live = body["data"]
            status, _ = await api.post("/auth/logout", token=revoked)
            assert status == 200
    finally:
        await srv.runner.cleanup()

    assert config.auth.jwt_secret == ""
    srv = await start_server(config)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, srv.api)
            status, body = await api.get("/auth/me", token=revoked)
            assert_error(status, body, 401, "AUTH_001")
            status, body = await api.get("/auth/me", token=live["token"])
            assert status == 200 and body["data"]["username"] == "restart_me"
            status, _ = await api.post("/auth/refresh-token", json={"refreshToken": live["refreshToken"]})
            assert status == 200
    finally:
        await srv.runner.cleanup()


# login rate limiting


def _limited(config: Config, per_account: int = 3, per_address: int = 200) -> Config:
    return config.replace(auth={"login_failures_per_account": per_account, "login_failures_per_address": per_address})


async def test_login_failures_are_limited_per_account(config):
    async with running(_limited(config)) as (srv, api):
        victim = (await api.post("/auth/register", json=_register_body("victim")))[1]["data"]["user"]
        status, _ = await api.post("/auth/register", json=_register_body("bystander"))
        assert status == 201
        for _ in range(3):
            status, body = await _login(api, victim["email"], "Wrong0ne")
            assert_error(status, body, 401, "AUTH_003")
        answer = await raw(
            api.session, "POST", srv.api + "/auth/login", json={"email": victim["email"], "password": "Wrong0ne"}
        )
        assert_error(answer.status, answer.body, 429, "RATE_001")
        retry_after = answer.body["error"]["details"]["retryAfter"]
        assert isinstance(retry_after, int) and 1 <= retry_after <= config.auth.login_failure_window
        assert answer.headers["Retry-After"] == str(retry_after)
        # the right password is refused too while limited, in any letter case of the email
        for email in (victim["email"], victim["email"].upper()):
            status, body = await _login(api, email, "Passw0rd")
            assert_error(status, body, 429, "RATE_001")
        # another account from the same address still logs in
        status, body = await _login(api, "bystander@example.com", "Passw0rd")
        assert status == 200, body


async def test_a_successful_login_clears_the_account_failures(config):
    async with running(_limited(config)) as (_, api):
        await api.post("/auth/register", json=_register_body("forgetful"))
        for _ in range(2):
            status, _ = await _login(api, "forgetful@example.com", "Wrong0ne")
            assert status == 401
        status, _ = await _login(api, "forgetful@example.com", "Passw0rd")
        assert status == 200
        for _ in range(2):
            status, _ = await _login(api, "forgetful@example.com", "Wrong0ne")
            assert status == 401
        status, _ = await _login(api, "forgetful@example.com", "Passw0rd")
        assert status == 200


async def test_login_failures_are_limited_per_address(config):
    async with running(_limited(config, per_account=100, per_address=4)) as (_, api):
        await api.post("/auth/register", json=_register_body("someone"))
        # successful logins do not use up the address budget (many users share one address)
        for _ in range(6):
            status, _ = await _login(api, "someone@example.com", "Passw0rd")
            assert status == 200
        for n in range(4):
            status, body = await _login(api, f"guess{n}@example.com", "Wrong0ne")
            assert_error(status, body, 401, "AUTH_003")
        status, body = await _login(api, "guess9@example.com", "Wrong0ne")
        assert_error(status, body, 429, "RATE_001")
        status, body = await _login(api, "someone@example.com", "Passw0rd")
        assert_error(status, body, 429, "RATE_001")


async def test_registration_is_not_limited_by_login_failures(config):
    async with running(_limited(config, per_account=1, per_address=1)) as (_, api):
        status, _ = await _login(api, "x@example.com", "Wrong0ne")
        assert status == 401
        status, body = await _login(api, "x@example.com", "Wrong0ne")
        assert_error(status, body, 429, "RATE_001")
        for n in range(5):
            status, body = await api.post("/auth/register", json=_register_body(f"newcomer{n}"))
            assert status == 201, body
            status, _ = await api.get("/auth/me", token=body["data"]["token"])
            assert status == 200


async def test_parallel_failures_cannot_outrun_the_account_budget(config):
    async with running(_limited(config)) as (_, api):
        await api.post("/auth/register", json=_register_body("raced"))
        answers = await asyncio.gather(*(_login(api, "raced@example.com", f"Wrong{n}ne") for n in range(8)))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [401] * 3 + [429] * 5, statuses


async def test_clients_cannot_assign_protected_fields(api, make_user):
    status, body = await api.post(
        "/auth/register",
        json={**_register_body("sneaky"), "role": "admin", "id": "0" * 24, "passwordHash": "x", "presence": "busy"},
    )
    assert status == 201
    user = body["data"]["user"]
    assert user["role"] == "user" and user["id"] != "0" * 24
    token = body["data"]["token"]
    status, body = await api.put(
        "/auth/profile", token=token, json={"role": "admin", "email": "other@example.com", "password": "Hijack3d"}
    )
    assert status == 200
    assert body["data"]["role"] == "user" and body["data"]["email"] == "sneaky@example.com"
    status, _ = await _login(api, "sneaky@example.com", "Passw0rd")
    assert status == 200


async def test_usernames_are_unique_ignoring_case(api, make_user):
    alice = await make_user("Case_Owner")
    status, body = await api.post("/auth/register", json=_register_body("case_owner", email="someone.else@example.com"))
    assert_error(status, body, 409, "RES_001")
    assert "username" in body["error"]["details"]
    bob = await make_user()
    status, body = await api.put("/auth/profile", token=bob.token, json={"username": "CASE_OWNER"})
    assert_error(status, body, 409, "RES_001")
    # changing the case of one's own name is fine
    status, body = await api.put("/auth/profile", token=alice.token, json={"username": "CASE_OWNER"})
    assert status == 200 and body["data"]["username"] == "CASE_OWNER"
