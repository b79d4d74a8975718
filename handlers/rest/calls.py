"""REST adapters for `/calls`: the same `CallService` the socket events call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from handlers.rest.apidoc import doc
from handlers.rest.auth import API
from handlers.rest.common import caller, envelope, read_body, read_query, services
from models.documents import Call
from schemas.calls import CallListQuery, CallOut, StartCall
from schemas.responses import CallPage

_call_out = CallOut()


async def _dump(request: web.Request, call: Call) -> dict[str, Any]:
    """The call as the wire shows it: its view (the participants' names) dumped with `CallOut`."""
    dumped: dict[str, Any] = _call_out.dump(await services(request).calls.view(call))
    return dumped


@doc(summary="Start a call", tag="calls", body=StartCall, data=CallOut, status=201)
async def start_call(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, StartCall())
    call = await services(request).calls.start(identity, body)
    return envelope(await _dump(request, call), "Call started", status=201)


@doc(summary="Your call history", tag="calls", query=CallListQuery, data=CallPage)
async def list_calls(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, CallListQuery())
    calls = services(request).calls
    items, total = await calls.history(identity, query["type"], query["page"], query["limit"])
    page, limit = query["page"], query["limit"]
    pagination = {"page": page, "limit": limit, "total": total, "pages": (total + limit - 1) // limit}
    return envelope({"calls": _call_out.dump(await calls.views(items), many=True), "pagination": pagination})


@doc(summary="A call", tag="calls", data=CallOut)
async def get_call(request: web.Request) -> web.Response:
    identity = await caller(request)
    call = await services(request).calls.get(identity, request.match_info["id"])
    return envelope(await _dump(request, call))


def _action(name: str, message: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    @doc(summary=f"{name.capitalize()} a call", tag="calls", data=CallOut)
    async def handler(request: web.Request) -> web.Response:
        identity = await caller(request)
        call = await getattr(services(request).calls, name)(identity, request.match_info["id"])
        return envelope(await _dump(request, call), message)

    return handler


routes = [
    web.post(f"{API}/calls", start_call),
    web.get(f"{API}/calls", list_calls, allow_head=False),
    web.get(f"{API}/calls/{{id}}", get_call, allow_head=False),
    web.post(f"{API}/calls/{{id}}/answer", _action("answer", "Call answered")),
    web.post(f"{API}/calls/{{id}}/reject", _action("reject", "Call rejected")),
    web.post(f"{API}/calls/{{id}}/end", _action("end", "Call ended")),
]
