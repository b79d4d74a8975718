"""Messages as the wire writes them, without marshmallow's per-field walk where it costs.

`MessageOut` resolves 14 dotted attributes per message through generic lookups,
which took most of a history page's time and a fifth of a send's. The store
already holds every value in its wire type, so while the schema has exactly the
fields below they are copied as they are; a test keeps the two equal, and a
schema with other fields goes back to `dump`. The adapters (REST, the socket
acks) and the event registry (`new_message`) all write messages through here.
"""

from __future__ import annotations

from typing import Any

from models.views import CatchUp, MessageView
from schemas.messages import MessageOut

_message_out = MessageOut()

# `MessageOut`'s fields, in its order: while the schema has exactly these, `dump_page` writes them itself
_PAGE_FIELDS = (
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
)
_PAGE_DIRECT = tuple(_message_out.dump_fields) == _PAGE_FIELDS and tuple(
    _message_out.dump_fields["sender"].schema.dump_fields  # type: ignore[attr-defined]
) == ("id", "username", "name", "avatar")


def dump(view: MessageView) -> dict[str, Any]:
    """One message through `MessageOut` itself: the reference the fast paths are held to."""
    dumped: dict[str, Any] = _message_out.dump(view)
    return dumped


def _page_entry(view: MessageView) -> dict[str, Any]:
    message, sender = view.message, view.sender
    return {
        "id": message.id,
        "chatId": message.chat_id,
        "senderId": message.sender_id,
        "sender": None
        if sender is None
        else {"id": sender.id, "username": sender.username, "name": sender.name, "avatar": sender.avatar},
        "content": message.content,
        "type": message.type,
        "metadata": None if message.metadata is None else dict(message.metadata),
        "replyTo": message.reply_to,
        "clientId": message.client_id,
        "status": view.status,
        "editedAt": message.edited_at,
        "deleted": bool(message.deleted),
        "createdAt": message.created_at,
        "updatedAt": message.updated_at,
    }


def dump_page(views: list[MessageView]) -> list[dict[str, Any]]:
    """A page of messages as `dump` writes each one."""
    if not _PAGE_DIRECT:
        return [dump(view) for view in views]
    return [_page_entry(view) for view in views]


def dump_one(view: MessageView) -> dict[str, Any]:
    """One message as `dump_page` writes it, written once per view.

    The send path's payload: `new_message` (dumped by the event registry when the
    service hands the notifier the view) and the sender's ack or REST answer
    (dumped by the adapter from the view the service returns) are the same dict,
    serialised once and kept on the view.
    """
    if view.payload is None:
        view.payload = _page_entry(view) if _PAGE_DIRECT else dump(view)
    return view.payload


def dump_catch_up(view: CatchUp) -> dict[str, Any]:
    """What `sync` answers (`SyncOut`), its messages written as `dump_page` writes them."""
    return {
        "messages": dump_page(view.messages),
        "changed": dump_page(view.changed),
        "hasMore": view.has_more,
        "cursor": view.cursor,
    }
