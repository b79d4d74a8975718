"""`/api/chats/*` and `/api/messages/*`: chats, history, sending, edits, deletes, read marks, search."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handlers.gochat.common import API, envelope
from handlers.rest.apidoc import doc
from handlers.rest.common import caller, read_body, read_query, services
from models.errors import Conflict, NotFound
from models.views import MessageView
from schemas import gochat as go
from schemas.payloads import dump_one, dump_page

_chat, _chat_page, _message, _message_page = go.ChatOut(), go.ChatPage(), go.MessageOut(), go.MessagePage()
_edit, _read = go.EditOut(), go.ReadOut()
TAG = "gochat"
# this door's sort fields, as the store orders chats
CHAT_ORDER = {"updated_at": "last_activity", "created_at": "created_at"}


def _pagination(page: int, limit: int, total: int) -> dict[str, int]:
    return {"page": page, "limit": limit, "total": total}


def _messages(views: list[MessageView], page: int, limit: int, total: int) -> dict[str, Any]:
    return _message_page.dump({"messages": dump_page(views), "pagination": _pagination(page, limit, total)})


@doc(summary="Your chats (archived ones too), latest activity first", tag=TAG, query=go.ChatListQuery, data=go.ChatPage)
async def list_chats(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, go.ChatListQuery())
    field, way = query["sort"].split(":")
    page, limit = query["page"], query["limit"]
    views, total = await services(request).chats.list(
        identity, None, None, page, limit, order_by=CHAT_ORDER[field], descending=way == "desc"
    )
    return envelope(_chat_page.dump({"chats": views, "pagination": _pagination(page, limit, total)}))


@doc(summary="A chat", tag=TAG, data=go.ChatOut)
async def get_chat(request: web.Request) -> web.Response:
    identity = await caller(request)
    return envelope(_chat.dump(await services(request).chats.get(identity, request.match_info["chat_id"])))


@doc(
    summary="Open a private chat (409 naming it when the pair has one)",
    tag=TAG,
    body=go.CreatePrivate,
    data=go.ChatOut,
    status=201,
)
async def create_private(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.CreatePrivate())
    view, created = await services(request).chats.create_private(identity, body["participant_id"])
    if not created:
        raise Conflict("Chat already exists with this user", details={"chat_id": view.chat.id})
    return envelope(_chat.dump(view), "Chat created successfully", status=201)


@doc(
    summary="History, newest first (`sort=created_at:asc`: oldest first)",
    tag=TAG,
    query=go.HistoryQuery,
    data=go.MessagePage,
)
async def history(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, go.HistoryQuery())
    page, limit = query["page"], query["limit"]
    wanted = {"page": page, "limit": limit, "live_only": True, "oldest_first": query["sort"] == "created_at:asc"}
    views, total, _ = await services(request).messages.history(identity, request.match_info["chat_id"], wanted)
    return envelope(_messages(views, page, limit, total))


@doc(summary="Search a chat's messages, newest first", tag=TAG, query=go.SearchQuery, data=go.MessagePage)
async def search(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, go.SearchQuery())
    page, limit = query["page"], query["limit"]
    wanted = {"page": page, "limit": limit, "search": query["query"], "live_only": True}
    views, total, _ = await services(request).messages.history(identity, request.match_info["chat_id"], wanted)
    return envelope(_messages(views, page, limit, total))


@doc(
    summary="Send a message (a repeated `client_id` answers the first, 200)",
    tag=TAG,
    body=go.SendMessage,
    data=go.MessageOut,
    status=201,
    also=(200,),
)
async def send(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.SendMessage())
    data = {**body, "chatId": request.match_info["chat_id"], "metadata": None}
    view, created = await services(request).messages.send(identity, data)
    message = "Message sent successfully" if created else "Message already sent"
    return envelope(_message.dump(dump_one(view)), message, status=201 if created else 200)


@doc(
    summary="Mark a chat read up to a message (all when absent)",
    tag=TAG,
    body=go.MarkRead,
    data=go.ReadOut,
    body_required=False,
)
async def mark_read(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.MarkRead()) if request.can_read_body else {"message_id": None}
    state = await services(request).messages.mark_read(identity, request.match_info["chat_id"], body["message_id"])
    return envelope(_read.dump(state), "Messages marked as read")


@doc(summary="Edit your message", tag=TAG, body=go.EditMessage, data=go.EditOut)
async def edit(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.EditMessage())
    view = await services(request).messages.edit(identity, request.match_info["message_id"], body)
    return envelope(_edit.dump(dump_one(view)), "Message updated successfully")


@doc(summary="Delete a message (its sender, or the group's owner or an admin)", tag=TAG, shape="none")
async def delete(request: web.Request) -> web.Response:
    identity = await caller(request)
    deletion = await services(request).messages.delete(identity, request.match_info["message_id"])
    if deletion.repeated:  # this door's history no longer has it
        raise NotFound("Message not found")
    return envelope(message="Message deleted successfully")


routes = [
    web.get(f"{API}/chats", list_chats, allow_head=False),
    web.post(f"{API}/chats/private", create_private),
    web.get(f"{API}/chats/{{chat_id:(?!private$)[^/]+}}", get_chat, allow_head=False),  # a 405 there: `Allow: POST`
    web.get(f"{API}/chats/{{chat_id}}/messages/search", search, allow_head=False),
    web.get(f"{API}/chats/{{chat_id}}/messages", history, allow_head=False),
    web.post(f"{API}/chats/{{chat_id}}/messages", send),
    web.put(f"{API}/chats/{{chat_id}}/mark-read", mark_read),
    web.put(f"{API}/messages/{{message_id}}", edit),
    web.delete(f"{API}/messages/{{message_id}}", delete),
]
