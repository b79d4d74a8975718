"""The `/ws` frames: which server events a plain WebSocket gets, and their shape.

One table beside the event registry (`handlers.sio.events`): for each event a
plain WebSocket carries, the frame `type` and the schema that reshapes the
event's payload, the dict the notifier already made for Socket.IO and carried
between processes, into this door's `data`. A frame is therefore written once
per event per process, however many connections get it, and only in processes
that have a connection to give it to. The AsyncAPI document and the tests read
the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields

from handlers.sio.events import EVENTS
from models.events import Event
from schemas import gochat as go


class Connected(Schema):
    user_id = fields.String(required=True)
    timestamp = fields.Integer(required=True)


class MessageStatus(Schema):
    message_id = fields.String(attribute="messageId", required=True, allow_none=True)
    chat_id = fields.String(attribute="chatId", required=True)
    status = fields.String(required=True)
    timestamp = go.UnixTime(attribute="at", required=True)


class Typing(Schema):
    chat_id = fields.String(attribute="chatId", required=True)
    user_id = fields.String(attribute="userId", required=True)
    user_name = fields.String(attribute="name", required=True)


class UserStatus(Schema):
    user_id = fields.String(attribute="userId", required=True)
    status = fields.Function(lambda p: go.SHOWN.get(p["status"], "offline"), required=True)
    last_seen = go.UnixTime(attribute="lastSeen", allow_none=True, required=True)


class MessageEdited(Schema):
    message_id = fields.String(attribute="messageId", required=True)
    chat_id = fields.String(attribute="chatId", required=True)
    content = fields.String(required=True)
    edited_at = go.UnixTime(attribute="editedAt", required=True)


class MessageDeleted(Schema):
    message_id = fields.String(attribute="messageId", required=True)
    chat_id = fields.String(attribute="chatId", required=True)
    deleted_at = go.UnixTime(attribute="deletedAt", required=True)


class Ack(Schema):
    request_id = fields.Raw(required=True)
    data = fields.Raw(required=True)


class ErrorData(Schema):
    code = fields.Integer(required=True)
    error = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Raw()


@dataclass(frozen=True, slots=True)
class FrameSpec:
    name: str  # the frame's `type`
    schema: type[Schema]  # what its `data` is (the AsyncAPI document shows it)
    description: str
    reshape: Callable[[Any], Any]  # the event's Socket.IO payload as this door's `data`
    # the payload field naming the user whose own connections skip the frame (a reader is not told they read)
    skip_user: str | None = None
    # the payload fields naming the chat, the message and its sender: a recipient's connection that got
    # the frame reports the message as delivered (`MessageService.reached`)
    reached: tuple[str, str, str] | None = None
    # which of the event's payloads this door passes on (None: all of them)
    wanted: Callable[[Any], bool] | None = None


def _frame(
    frame_type: str,
    schema: type[Schema],
    description: str,
    skip_user: str | None = None,
    reached: tuple[str, str, str] | None = None,
    wanted: Callable[[Any], bool] | None = None,
) -> FrameSpec:
    return FrameSpec(frame_type, schema, description, schema().dump, skip_user, reached, wanted)


def _once_per_message(payload: Any) -> bool:
    """Every `read`; of the `delivered` receipts (one per member), the first member's only."""
    return bool(payload.get("status") != "delivered" or payload.get("first"))


FRAMES: dict[Event, FrameSpec] = {
    Event.NEW_MESSAGE: _frame(
        "new_message",
        go.MessageOut,
        "A message in one of your chats, to every connection of every member (the sender's too).",
        reached=("chatId", "id", "senderId"),
    ),
    Event.MESSAGE_STATUS: _frame(
        "message_status",
        MessageStatus,
        "Your message reached a member (`delivered`, once) or members read up to it (`read`).",
        skip_user="userId",
        wanted=_once_per_message,
    ),
    Event.TYPING_START: _frame("typing_start", Typing, "Another member started typing."),
    Event.TYPING_STOP: _frame("typing_stop", Typing, "Another member stopped typing."),
    Event.USER_STATUS_CHANGED: _frame(
        "user_status", UserStatus, "Someone who shares a chat with you came online, went away, dnd or offline."
    ),
    Event.MESSAGE_EDITED: _frame("message_edited", MessageEdited, "A message was edited."),
    Event.MESSAGE_DELETED: _frame("message_deleted", MessageDeleted, "A message was deleted."),
}

if stray := [event.value for event in FRAMES if event not in EVENTS]:  # pragma: no cover - a programming error
    raise RuntimeError(f"/ws frames for events the registry does not know: {', '.join(stray)}")

# by the event's name as an instruction carries it
BY_NAME: dict[str, FrameSpec] = {event.value: spec for event, spec in FRAMES.items()}
