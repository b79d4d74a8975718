"""REST adapters for `/calls`: the same `CallService` the socket events call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from handlers.rest.apidoc import doc
from handlers.rest.auth import API
from handlers.rest.common import caller, envelope, read_body, read_query
from schemas.calls import CallListQuery, CallOut, StartCall
from schemas.responses import CallPage
from server.keys import CALLS


@doc(summary="Start a call", tag="calls", body=StartCall, data=CallOut, status=201)
async def start_call(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, StartCall())
    calls = request.app[CALLS]
    call = await calls.start(identity, body)
    return envelope(await calls.dump(call), "Call started", status=201)


@doc(summary="Your call history", tag="calls", query=CallListQuery, data=CallPage)
async def list_calls(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, CallListQuery())
    calls = request.app[CALLS]
    items, total = await calls.history(identity, query["type"], query["page"], query["limit"])
    page, limit = query["page"], query["limit"]
    pagination = {"page": page, "limit": limit, "total": total, "pages": (total + limit - 1) // limit}
    return envelope({"calls": [await calls.dump(call) for call in items], "pagination": pagination})


@doc(summary="A call", tag="calls", data=CallOut)
async def get_call(request: web.Request) -> web.Response:
    identity = await caller(request)
    calls = request.app[CALLS]
    return envelope(await calls.dump(await calls.get(identity, request.match_info["id"])))


def _action(name: str, message: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    @doc(summary=f"{name.capitalize()} a call", tag="calls", data=CallOut)
    async def handler(request: web.Request) -> web.Response:
        identity = await caller(request)
        calls = request.app[CALLS]
        call = await getattr(calls, name)(identity, request.match_info["id"])
        return envelope(await calls.dump(call), message)

    return handler


routes = [
    web.post(f"{API}/calls", start_call),
    web.get(f"{API}/calls", list_calls, allow_head=False),
    web.get(f"{API}/calls/{{id}}", get_call, allow_head=False),
    web.post(f"{API}/calls/{{id}}/answer", _action("answer", "Call answered")),
    web.post(f"{API}/calls/{{id}}/reject", _action("reject", "Call rejected")),
    web.post(f"{API}/calls/{{id}}/end", _action("end", "Call ended")),
]
