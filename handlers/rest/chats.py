"""REST adapters for `/chats` and `/groups` (a group is a chat with `type: group`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from handlers.rest.apidoc import doc
from handlers.rest.auth import API
from handlers.rest.common import caller, envelope, read_body, read_query, services
from models.errors import ValidationFailed
from schemas import chats as s
from schemas.events import ReadMark
from schemas.messages import ReadBody
from schemas.responses import AddedParticipants, RoleOut

_chat_out = s.ChatOut()
_participant_out = s.ParticipantOut()
_read_mark, _role = ReadMark(), RoleOut()


def _list_answer(views: list, page: int, limit: int, total: int) -> web.Response:
    """The seed answers chat lists as an array: `data` stays one, `pagination` sits beside it."""
    pagination = {"page": page, "limit": limit, "total": total, "pages": (total + limit - 1) // limit}
    return envelope(_chat_out.dump(views, many=True), extra={"pagination": pagination})


@doc(summary="Your chats, latest activity first", tag="chats", query=s.ChatListQuery, data=s.ChatOut, shape="list")
async def list_chats(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, s.ChatListQuery())
    views, total = await services(request).chats.list(identity, query["archived"], None, query["page"], query["limit"])
    return _list_answer(views, query["page"], query["limit"], total)


@doc(
    summary="Create a private chat (idempotent per pair) or a group",
    tag="chats",
    body=s.CreateChat,
    data=s.ChatOut,
    status=201,
    also=(200,),
)
async def create_chat(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.CreateChat())
    chats = services(request).chats
    if body["type"] == "private":
        if len(body["participants"]) != 1:
            raise ValidationFailed(details={"participants": ["A private chat takes exactly one other user."]})
        view, created = await chats.create_private(identity, body["participants"][0])
        message = "Chat created" if created else "Chat already exists"
        return envelope(_chat_out.dump(view), message, status=201 if created else 200)
    if not body.get("name"):
        raise ValidationFailed(details={"name": ["Groups need a name."]})
    view = await chats.create_group(identity, body)
    return envelope(_chat_out.dump(view), "Chat created", status=201)


@doc(summary="A chat", tag="chats", data=s.ChatOut)
async def get_chat(request: web.Request) -> web.Response:
    identity = await caller(request)
    return envelope(_chat_out.dump(await services(request).chats.get(identity, request.match_info["id"])))


@doc(summary="Rename or describe a group", tag="chats", body=s.UpdateChat, data=s.ChatOut)
async def update_chat(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.UpdateChat())
    view = await services(request).chats.update(identity, request.match_info["id"], body)
    return envelope(_chat_out.dump(view), "Chat updated")


@doc(summary="Delete a chat", tag="chats", shape="none")
async def delete_chat(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).chats.delete(identity, request.match_info["id"])
    return envelope(message="Chat deleted")


def _flag(flag: str, value: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    verb = ("Archive" if value else "Unarchive") if flag == "archived" else ("Mute" if value else "Unmute")

    @doc(summary=f"{verb} a chat (your own flag)", tag="chats", data=s.ChatOut)
    async def handler(request: web.Request) -> web.Response:
        identity = await caller(request)
        view = await services(request).chats.set_flag(identity, request.match_info["id"], flag, value)
        return envelope(_chat_out.dump(view), f"Chat {'' if value else 'un'}{flag}")

    return handler


@doc(summary="Mark read up to a message", tag="chats", body=ReadBody, body_required=False, data=ReadMark)
async def mark_read(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, ReadBody()) if request.body_exists else {"messageId": None}
    marked = await services(request).messages.mark_read(identity, request.match_info["id"], body["messageId"])
    return envelope(_read_mark.dump(marked), "Marked as read")


@doc(summary="Your groups", tag="groups", query=s.ChatListQuery, data=s.ChatOut, shape="list")
async def list_groups(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, s.ChatListQuery())
    chats = services(request).chats
    views, total = await chats.list(identity, query["archived"], "group", query["page"], query["limit"])
    return _list_answer(views, query["page"], query["limit"], total)


@doc(summary="Create a group", tag="groups", body=s.CreateGroup, data=s.ChatOut, status=201)
async def create_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.CreateGroup())
    view = await services(request).chats.create_group(identity, body)
    return envelope(_chat_out.dump(view), "Group created", status=201)


@doc(summary="A group", tag="groups", data=s.ChatOut)
async def get_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    return envelope(_chat_out.dump(await services(request).chats.get(identity, request.match_info["id"], group=True)))


@doc(summary="Update a group (admins)", tag="groups", body=s.UpdateChat, data=s.ChatOut)
async def update_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.UpdateChat())
    view = await services(request).chats.update(identity, request.match_info["id"], body, group=True)
    return envelope(_chat_out.dump(view), "Group updated")


@doc(summary="Delete a group (admins)", tag="groups", shape="none")
async def delete_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).chats.delete(identity, request.match_info["id"], group=True)
    return envelope(message="Group deleted")


@doc(summary="Add members", tag="groups", body=s.AddParticipants, data=AddedParticipants)
async def add_participants(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.AddParticipants())
    added = await services(request).chats.add_members(identity, request.match_info["id"], body["userIds"])
    return envelope({"addedParticipants": _participant_out.dump(added, many=True)}, "Participants added")


@doc(summary="Remove a member (admins, or yourself)", tag="groups", shape="none")
async def remove_participant(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).chats.remove_member(identity, request.match_info["id"], request.match_info["userId"])
    return envelope(message="Participant removed")


@doc(summary="Change a member's role (admins)", tag="groups", body=s.SetRole, data=RoleOut)
async def set_role(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.SetRole())
    info = request.match_info
    change = await services(request).chats.set_role(identity, info["id"], info["userId"], body["role"])
    return envelope(_role.dump(change), "Role changed")


@doc(summary="Leave a group", tag="groups", shape="none")
async def leave_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).chats.leave(identity, request.match_info["id"])
    return envelope(message="Left the group")


routes = [
    web.get(f"{API}/chats", list_chats, allow_head=False),
    web.post(f"{API}/chats", create_chat),
    web.get(f"{API}/chats/{{id}}", get_chat, allow_head=False),
    web.put(f"{API}/chats/{{id}}", update_chat),
    web.delete(f"{API}/chats/{{id}}", delete_chat),
    web.post(f"{API}/chats/{{id}}/archive", _flag("archived", True)),
    web.delete(f"{API}/chats/{{id}}/archive", _flag("archived", False)),
    web.post(f"{API}/chats/{{id}}/mute", _flag("muted", True)),
    web.delete(f"{API}/chats/{{id}}/mute", _flag("muted", False)),
    web.put(f"{API}/chats/{{id}}/read", mark_read),
    web.get(f"{API}/groups", list_groups, allow_head=False),
    web.post(f"{API}/groups", create_group),
    web.get(f"{API}/groups/{{id}}", get_group, allow_head=False),
    web.put(f"{API}/groups/{{id}}", update_group),
    web.delete(f"{API}/groups/{{id}}", delete_group),
    web.post(f"{API}/groups/{{id}}/participants", add_participants),
    web.delete(f"{API}/groups/{{id}}/participants/{{userId}}", remove_participant),
    web.put(f"{API}/groups/{{id}}/participants/{{userId}}/role", set_role),
    web.post(f"{API}/groups/{{id}}/leave", leave_group),
]
