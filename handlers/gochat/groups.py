"""`/api/groups/*` and `/api/uploads`: groups (a group is a chat: `group_id` equals `chat_id`) and files."""

from __future__ import annotations

from aiohttp import web

from handlers.gochat.common import API, envelope
from handlers.rest.apidoc import doc
from handlers.rest.common import caller, read_body, services
from handlers.rest.messages import download, receive_upload
from models.views import ChatView
from schemas import gochat as go

_group, _added, _upload = go.GroupOut(), go.MembersAddedOut(), go.UploadOut()
TAG = "gochat"


async def _group_view(request: web.Request, group_id: str) -> ChatView:
    identity = await caller(request)
    return await services(request).chats.get(identity, group_id, group=True)


@doc(
    summary="Create a group (you own it; only its owner and admins add members)",
    tag=TAG,
    body=go.CreateGroup,
    data=go.GroupOut,
    status=201,
)
async def create_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.CreateGroup())
    view = await services(request).chats.create_group(identity, {**body, "onlyAdminsCanAdd": True})
    return envelope(_group.dump(view), "Group created successfully", status=201)


@doc(summary="A group and its members", tag=TAG, data=go.GroupOut)
async def get_group(request: web.Request) -> web.Response:
    return envelope(_group.dump(await _group_view(request, request.match_info["group_id"])))


@doc(summary="Rename or describe a group (its owner or an admin)", tag=TAG, body=go.UpdateGroup, data=go.GroupOut)
async def update_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.UpdateGroup())
    view = await services(request).chats.update(identity, request.match_info["group_id"], body, group=True)
    return envelope(_group.dump(view), "Group updated successfully")


@doc(summary="Delete a group (its owner only)", tag=TAG, shape="none")
async def delete_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).chats.delete(identity, request.match_info["group_id"], group=True, owner_only=True)
    return envelope(message="Group deleted successfully")


@doc(
    summary="Add members (members already in are skipped)",
    tag=TAG,
    body=go.AddMembers,
    data=go.MembersAddedOut,
    status=201,
)
async def add_members(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, go.AddMembers())
    group_id = request.match_info["group_id"]
    added = await services(request).chats.add_members(identity, group_id, body["member_ids"])
    return envelope(
        _added.dump({"group_id": group_id, "added_members": added}), "Members added successfully", status=201
    )


@doc(summary="Remove a member (the owner or an admin; never the owner)", tag=TAG, shape="none")
async def remove_member(request: web.Request) -> web.Response:
    identity = await caller(request)
    group_id, member_id = request.match_info["group_id"], request.match_info["member_id"]
    await services(request).chats.remove_member(identity, group_id, member_id)
    return envelope(message="Member removed successfully")


@doc(summary="Leave a group (an owner leaving passes ownership on)", tag=TAG, shape="none")
async def leave_group(request: web.Request) -> web.Response:
    identity = await caller(request)
    await services(request).chats.leave(identity, request.match_info["group_id"])
    return envelope(message="Left group successfully")


@doc(
    summary="Upload a file (multipart `file`, `purpose`; 10 MB)",
    tag=TAG,
    data=go.UploadOut,
    shape="multipart",
    status=201,
)
async def upload(request: web.Request) -> web.Response:
    return envelope(_upload.dump(await receive_upload(request)), "File uploaded successfully", status=201)


routes = [
    web.post(f"{API}/groups", create_group),
    web.get(f"{API}/groups/{{group_id}}", get_group, allow_head=False),
    web.put(f"{API}/groups/{{group_id}}", update_group),
    web.delete(f"{API}/groups/{{group_id}}", delete_group),
    web.post(f"{API}/groups/{{group_id}}/members", add_members),
    web.delete(f"{API}/groups/{{group_id}}/members/{{member_id}}", remove_member),
    web.post(f"{API}/groups/{{group_id}}/leave", leave_group),
    web.post(f"{API}/uploads", upload),
    web.get(f"{API}/uploads/{{id}}", download),
]
