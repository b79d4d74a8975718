"""REST adapters for `/users`, `/status` and `/health`."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from handlers.rest.apidoc import doc
from handlers.rest.auth import API
from handlers.rest.common import caller, envelope, paged, read_body, read_query, services
from models.clock import now_iso
from models.errors import ServiceUnavailable
from schemas.events import StatusSet
from schemas.responses import HealthOut, StatusOption, UserPage
from schemas.users import AdminUserUpdate, PresenceUpdate, UserListQuery, UserOut
from server.keys import PROCESS_ID, REDIS, SERVICES, SIO, STARTED_AT, STORE

VERSION = "1.0.0"
REDIS_PING_TIMEOUT = 1.0  # seconds: a Redis slower than this to PING counts as down
_user_out = UserOut()
_status_set = StatusSet()
STATUS_OPTIONS = [
    {"key": "online", "label": "在线", "description": "用户当前在线"},
    {"key": "away", "label": "离开", "description": "用户暂时离开"},
    {"key": "busy", "label": "忙碌", "description": "用户正在忙碌"},
    {"key": "invisible", "label": "隐身", "description": "用户隐身在线"},
]


@doc(summary="List and search users", tag="users", query=UserListQuery, data=UserPage)
async def list_users(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, UserListQuery())
    page = await services(request).users.search(identity, query["search"], query["page"], query["limit"])
    return envelope(paged("users", page, _user_out))


@doc(summary="A user", tag="users", data=UserOut)
async def get_user(request: web.Request) -> web.Response:
    identity = await caller(request)
    users = services(request).users
    user = await users.get(request.match_info["id"])
    return envelope(_user_out.dump(await users.view(user, identity.user.id)))


@doc(summary="Update a user (admins)", tag="users", body=AdminUserUpdate, data=UserOut)
async def update_user(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, AdminUserUpdate())
    users = services(request).users
    user = await users.admin_update(identity, request.match_info["id"], body)
    return envelope(_user_out.dump(await users.view(user, identity.user.id)), "User updated")


@doc(summary="Delete a user (admins)", tag="users", shape="none")
async def delete_user(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).users.admin_delete(identity, request.match_info["id"])
    return envelope(message="User deleted")


@doc(summary="Block a user", tag="users", shape="none")
async def block_user(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).users.set_blocked(identity, request.match_info["id"], True)
    return envelope(message="User blocked")


@doc(summary="Unblock a user", tag="users", shape="none")
async def unblock_user(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).users.set_blocked(identity, request.match_info["id"], False)
    return envelope(message="User unblocked")


@doc(summary="Set your presence", tag="status", body=PresenceUpdate, data=StatusSet)
async def set_status(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, PresenceUpdate())
    user = await services(request).users.set_presence(identity, body["status"])
    return envelope(_status_set.dump(user), "Status updated")


@doc(summary="The presence options", tag="status", data=StatusOption, shape="list", auth=False)
async def status_options(request: web.Request) -> web.Response:
    return envelope(STATUS_OPTIONS)


@doc(summary="Health of the service", tag="health", data=HealthOut, auth=False)
async def health(request: web.Request) -> web.Response:
    """200 when the database answers, `degraded` while a configured Redis does not; 503 without the database.

    The 503 is a failure envelope that still carries the report. Redis is checked
    (and reported) only when `redis.url` is set, and is healthy once it answers
    and this process listens on its channel; without it a process shares
    nothing, and the database alone decides. `process` names the answering
    process, which tells apart the workers behind one port.
    """
    app = request.app
    checks = {"database": "healthy", "websocket": "healthy" if SIO in app else "unavailable"}
    try:
        await app[STORE].ping()
    except Exception:
        checks["database"] = "unhealthy"
    redis = app.get(REDIS)
    if redis is not None:
        try:
            await asyncio.wait_for(redis.ping(), REDIS_PING_TIMEOUT)
            # and the channel between processes is subscribed: until it is, sockets are refused
            checks["redis"] = "healthy" if getattr(app[SIO].manager, "accepting", True) else "unhealthy"
        except Exception:  # down, refusing, or too slow: all the same to a load balancer
            checks["redis"] = "unhealthy"
    healthy = checks["database"] == "healthy"
    status = "healthy" if healthy else "unhealthy"
    if healthy and checks.get("redis") == "unhealthy":
        status = "degraded"
    data = {
        "status": status,
        "timestamp": now_iso(),
        "uptime": round(time.monotonic() - app[STARTED_AT], 3),
        "version": VERSION,
        "process": app[PROCESS_ID],
        "services": checks,
        "connections": {"onlineUsers": app[SERVICES].presence.online_users},
    }
    if healthy:
        return envelope(data)
    error = ServiceUnavailable("The database is unavailable")
    body = {"success": False, "message": error.message, "error": error.to_dict(), "data": data}
    return web.Response(body=orjson.dumps(body), status=error.status, content_type="application/json")


routes = [
    web.get(f"{API}/users", list_users, allow_head=False),
    web.get(f"{API}/users/{{id}}", get_user, allow_head=False),
    web.put(f"{API}/users/{{id}}", update_user),
    web.delete(f"{API}/users/{{id}}", delete_user),
    web.post(f"{API}/users/{{id}}/block", block_user),
    web.delete(f"{API}/users/{{id}}/block", unblock_user),
    web.put(f"{API}/status", set_status),
    web.get(f"{API}/status", status_options, allow_head=False),
    web.get(f"{API}/health", health, allow_head=False),
]
