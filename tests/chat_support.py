"""Helpers shared by the chat and message test files: chats, sends and history over REST, recording sockets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from tests.conftest import Account, Api, Socket

MISSING = "0123456789abcdef01234567"  # a well-formed id no document has
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")  # a UTC timestamp with milliseconds
MESSAGE_KEYS = {
    "id",
    "chatId",
    "senderId",
    "sender",
    "content",
    "type",
    "metadata",
    "replyTo",
    "clientId",
    "status",
    "editedAt",
    "deleted",
    "createdAt",
    "updatedAt",
}
# what the server emits about the messages of a chat
MESSAGE_TRAFFIC = ("new_message", "message_edited", "message_deleted", "message_status", "typing_start", "typing_stop")
# every chat event the server emits: the message traffic, and the changes to chats and their members
MESSAGE_EVENTS = (
    *MESSAGE_TRAFFIC,
    "chat_created",
    "chat_updated",
    "chat_deleted",
    "participant_added",
    "participant_removed",
)


async def connect(sockets: Callable[..., Any], user: Account, namespace: str = "/") -> Socket:
    """A socket of `user` that records every chat event, once authenticated (its rooms are joined by then)."""
    socket = await sockets(token=user.token, namespace=namespace, events=MESSAGE_EVENTS)
    await socket.seen.wait_for("authenticated")
    return socket


async def private_chat(api: Api, a: Account, b: Account, statuses: tuple[int, ...] = (200, 201)) -> str:
    """The id of the private chat of `a` with `b`, opened by `a` (200: it was there already, 201: new)."""
    status, body = await api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]})
    assert status in statuses, body
    return body["data"]["id"]


async def new_group(api: Api, owner: Account, members: Iterable[Account], **extra: Any) -> dict[str, Any]:
    """A group made over `/groups`, named "crew" unless `name=` says otherwise: the whole Chat."""
    status, body = await api.post(
        "/groups", token=owner.token, json={"name": "crew", "participants": [m.id for m in members], **extra}
    )
    assert status == 201, body
    return body["data"]


async def group_chat(api: Api, owner: Account, *members: Account, name: str = "team") -> str:
    """The id of a new group of `owner` with `members`."""
    return (await new_group(api, owner, members, name=name))["id"]


async def rest_send(api: Api, user: Account, chat_id: str, content: str = "hi", **extra: Any) -> dict[str, Any]:
    """A message sent over REST (`extra` goes into the body: clientId, replyTo, type, ...): the Message."""
    status, body = await api.post("/messages", token=user.token, json={"chatId": chat_id, "content": content, **extra})
    assert status == 201, body
    return body["data"]


async def history_page(api: Api, user: Account, chat_id: str, **params: Any) -> dict[str, Any]:
    """One page of a chat's history as `user` sees it, with the query `params`: the whole `data` of the answer."""
    status, body = await api.get(f"/messages/{chat_id}", token=user.token, params=params)
    assert status == 200, body
    return body["data"]


async def history(api: Api, user: Account, chat_id: str) -> list[dict[str, Any]]:
    """The latest 100 messages of a chat as `user` sees them."""
    return (await history_page(api, user, chat_id, limit=100))["messages"]
