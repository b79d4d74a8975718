"""REST adapters for `/auth/*`: load input, call `AuthService`/`UserService`, answer."""

from __future__ import annotations

from aiohttp import web

from handlers.rest.apidoc import doc
from handlers.rest.common import caller, envelope, read_body, services
from models.auth import TokenPair
from schemas import auth as s
from schemas.responses import AuthOut, TokensOut
from schemas.users import ProfileUpdate, UserOut

API = "/api/v1"
_user_out = UserOut()


def _tokens(pair: TokenPair) -> dict[str, str]:
    return {"token": pair.token, "refreshToken": pair.refresh_token}


def _address(request: web.Request) -> str:
    return request.remote or "unknown"


@doc(summary="Register", tag="auth", body=s.Register, data=AuthOut, status=201, auth=False)
async def register(request: web.Request) -> web.Response:
    body = await read_body(request, s.Register())
    user, pair = await services(request).auth.register(**body)
    view = await services(request).users.view(user, user.id)
    return envelope({"user": _user_out.dump(view), **_tokens(pair)}, "User registered", status=201)


@doc(summary="Log in", tag="auth", body=s.Login, data=AuthOut, auth=False)
async def login(request: web.Request) -> web.Response:
    body = await read_body(request, s.Login())
    user, pair = await services(request).auth.login(body["email"], body["password"], _address(request))
    view = await services(request).users.view(user, user.id)
    return envelope({"user": _user_out.dump(view), **_tokens(pair)}, "Logged in")


@doc(summary="Rotate the refresh token", tag="auth", body=s.RefreshToken, data=TokensOut, auth=False)
async def refresh_token(request: web.Request) -> web.Response:
    body = await read_body(request, s.RefreshToken())
    pair = await services(request).auth.refresh(body["refreshToken"])
    return envelope(_tokens(pair), "Token refreshed")


@doc(summary="Log out (revoke this login)", tag="auth", shape="none")
async def logout(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).auth.logout(identity)
    return envelope(message="Logged out")


@doc(summary="The current user", tag="auth", data=UserOut)
async def me(request: web.Request) -> web.Response:
    identity = await caller(request)
    return envelope(_user_out.dump(await services(request).users.view(identity.user, identity.user.id)))


@doc(summary="Update your profile", tag="auth", body=ProfileUpdate, data=UserOut)
async def update_profile(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, ProfileUpdate())
    user = await services(request).users.update_profile(identity, body)
    return envelope(_user_out.dump(await services(request).users.view(user, user.id)), "Profile updated")


@doc(summary="Change your password", tag="auth", body=s.ChangePassword, shape="none")
async def change_password(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.ChangePassword())
    await services(request).auth.change_password(identity, body["currentPassword"], body["newPassword"])
    return envelope(message="Password changed; other sessions were signed out")


@doc(summary="Mail a password reset token", tag="auth", body=s.ForgotPassword, shape="none", auth=False)
async def forgot_password(request: web.Request) -> web.Response:
    body = await read_body(request, s.ForgotPassword())
    await services(request).auth.forgot_password(body["email"])
    return envelope(message="If the account exists, a reset mail has been sent")


@doc(summary="Reset a password with a mailed token", tag="auth", body=s.ResetPassword, shape="none", auth=False)
async def reset_password(request: web.Request) -> web.Response:
    body = await read_body(request, s.ResetPassword())
    await services(request).auth.reset_password(body["token"], body["newPassword"])
    return envelope(message="Password reset; every session was signed out")


routes = [
    web.post(f"{API}/auth/register", register),
    web.post(f"{API}/auth/login", login),
    web.post(f"{API}/auth/refresh-token", refresh_token),
    web.post(f"{API}/auth/logout", logout),
    web.get(f"{API}/auth/me", me, allow_head=False),
    web.put(f"{API}/auth/profile", update_profile),
    web.put(f"{API}/auth/change-password", change_password),
    web.post(f"{API}/auth/forgot-password", forgot_password),
    web.post(f"{API}/auth/reset-password", reset_password),
]
