"""`/api/auth/*` and `/api/users/*`: accounts, logins, profiles, search and status."""

from __future__ import annotations

from aiohttp import web

from handlers.gochat.common import API, envelope
from handlers.rest.apidoc import doc
from handlers.rest.common import caller, read_body, read_query, services
from models.users import UserView
from schemas import gochat as go

_profile, _user, _login, _refresh, _status = (
    go.ProfileOut(),
    go.UserOut(),
    go.LoginOut(),
    go.RefreshOut(),
    go.StatusOut(),
)
_user_page = go.UserPage()
TAG = "gochat"


async def _own_view(request: web.Request, user_id: str) -> UserView:
    s = services(request)
    return await s.users.view(await s.users.get(user_id), user_id)


@doc(summary="Register", tag=TAG, body=go.Register, data=go.ProfileOut, status=201, auth=False)
async def register(request: web.Request) -> web.Response:
    """The server picks the username; the name given is the display name."""
    body = await read_body(request, go.Register())
    user, _ = await services(request).auth.register(username=None, **body)
    view = await services(request).users.view(user, user.id)
    return envelope(_profile.dump(view), "User registered successfully", status=201)


@doc(summary="Log in", tag=TAG, body=go.Login, data=go.LoginOut, auth=False)
async def login(request: web.Request) -> web.Response:
    body = await read_body(request, go.Login())
    s = services(request)
    user, pair = await s.auth.login(body["email"], body["password"], request.remote or "unknown", rotates=False)
    answer = {
        "access_token": pair.token,
        "refresh_token": pair.refresh_token,
        "expires_in": s.auth.signer.access_ttl,
        "user": await s.users.view(user, user.id),
    }
    return envelope(_login.dump(answer), "Login successful")


@doc(
    summary="A new access token (the refresh token stays valid)",
    tag=TAG,
    body=go.Refresh,
    data=go.RefreshOut,
    auth=False,
)
async def refresh(request: web.Request) -> web.Response:
    body = await read_body(request, go.Refresh())
    auth = services(request).auth
    pair = await auth.refresh(body["refresh_token"])
    return envelope(
        _refresh.dump({"access_token": pair.token, "expires_in": auth.signer.access_ttl}), "Token refreshed"
    )


@doc(summary="Log out: this login's tokens and live connections end", tag=TAG, shape="none")
async def logout(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).auth.logout(identity)
    return envelope(message="Logged out successfully")


@doc(summary="Your profile", tag=TAG, data=go.ProfileOut)
async def profile(request: web.Request) -> web.Response:
    identity = await caller(request)
    return envelope(_profile.dump(await _own_view(request, identity.user.id)))


@doc(summary="Update your name, avatar or bio", tag=TAG, body=go.ProfileUpdate, data=go.ProfileOut)
async def update_profile(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.ProfileUpdate())
    await services(request).users.update_profile(identity, body)
    return envelope(_profile.dump(await _own_view(request, identity.user.id)), "Profile updated successfully")


@doc(summary="Find users by name or username", tag=TAG, query=go.UserSearchQuery, data=go.UserPage)
async def search(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, go.UserSearchQuery())
    page = await services(request).users.search(identity, query["query"], query["page"], query["limit"], emails=False)
    pagination = {"page": page.page, "limit": page.limit, "total": page.total}
    return envelope(_user_page.dump({"users": page.items, "pagination": pagination}))


@doc(summary="A user", tag=TAG, data=go.UserOut)
async def get_user(request: web.Request) -> web.Response:
    identity = await caller(request)
    users = services(request).users
    user = await users.get(request.match_info["user_id"])
    return envelope(_user.dump(await users.view(user, identity.user.id)))


@doc(
    summary="Set your status (`offline` while connected: appear offline)",
    tag=TAG,
    body=go.StatusUpdate,
    data=go.StatusOut,
)
async def set_status(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.StatusUpdate())
    user = await services(request).users.set_presence(identity, go.CHOSEN[body["status"]])
    answer = {"status": body["status"], "last_seen": go.unix(user.last_seen)}
    return envelope(_status.dump(answer), "Status updated successfully")


# `profile` and `search` before `{user_id}`, which would otherwise take them
routes = [
    web.post(f"{API}/auth/register", register),
    web.post(f"{API}/auth/login", login),
    web.post(f"{API}/auth/refresh", refresh),
    web.post(f"{API}/auth/logout", logout),
    web.get(f"{API}/users/profile", profile, allow_head=False),
    web.put(f"{API}/users/profile", update_profile),
    web.get(f"{API}/users/search", search, allow_head=False),
    web.put(f"{API}/users/status", set_status),
    # never `profile`, `search` or `status`: a 405 there names only their own methods in `Allow`
    web.get(f"{API}/users/{{user_id:(?!(?:profile|search|status)$)[^/]+}}", get_user, allow_head=False),
]
