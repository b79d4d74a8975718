"""The Socket.IO side of the wire: a schema for every event in both directions.

Client events are loaded with the input schemas the namespaces declare
(`event_schemas`); what their acks carry in `data` is `ACK_DATA`; the schema of
every event the server pushes is given by the event registry
(`handlers.sio.events.EVENTS`), mostly one of these. They dump the views of
`models.views` (hence the `attribute`s). The AsyncAPI document is generated from
these tables, and the tests validate every emitted event against it.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas.calls import CallOut, Signal
from schemas.chats import ParticipantOut
from schemas.messages import MessageOut
from schemas.users import UserOut


class Authenticated(Schema):
    user = fields.Nested(UserOut, required=True)


class ErrorOut(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Raw(allow_none=True)


class ErrorEvent(ErrorOut):
    event = fields.String(required=True)


class MessageEdited(Schema):
    messageId = fields.String(required=True, attribute="message_id")
    chatId = fields.String(required=True, attribute="chat_id")
    content = fields.String(required=True)
    editedAt = fields.String(required=True, attribute="edited_at")


class MessageDeleted(Schema):
    messageId = fields.String(required=True, attribute="message_id")
    chatId = fields.String(required=True, attribute="chat_id")
    deletedAt = fields.String(required=True, attribute="deleted_at")


class MessageStatus(Schema):
    chatId = fields.String(required=True, attribute="chat_id")
    messageId = fields.String(required=True, allow_none=True, attribute="message_id")
    userId = fields.String(required=True, attribute="user_id")
    status = fields.String(required=True)
    at = fields.String(required=True)
    first = fields.Boolean()  # `delivered`: the first member the message reached


class ReadMark(Schema):
    chatId = fields.String(required=True, attribute="chat_id")
    messageId = fields.String(required=True, allow_none=True, attribute="message_id")
    unreadCount = fields.Integer(required=True, attribute="unread_count")
    at = fields.String(required=True)


class Typing(Schema):
    chatId = fields.String(required=True, attribute="chat_id")
    userId = fields.String(required=True, attribute="user_id")
    username = fields.String(required=True)
    name = fields.String(required=True)  # the display name


class SyncOut(Schema):
    """Written by `schemas.payloads.dump_catch_up` (messages without marshmallow's walk); documented here."""

    messages = fields.List(fields.Nested(MessageOut), required=True)
    changed = fields.List(fields.Nested(MessageOut), required=True)
    hasMore = fields.Boolean(required=True, attribute="has_more")
    cursor = fields.String(required=True)


class ChatDeleted(Schema):
    chatId = fields.String(required=True, attribute="chat_id")
    deletedBy = fields.String(required=True, attribute="deleted_by")


class ParticipantAdded(Schema):
    chatId = fields.String(required=True, attribute="chat_id")
    participants = fields.List(fields.Nested(ParticipantOut), required=True)
    addedBy = fields.String(required=True, attribute="added_by")


class ParticipantRemoved(Schema):
    chatId = fields.String(required=True, attribute="chat_id")
    userId = fields.String(required=True, attribute="user_id")
    removedBy = fields.String(required=True, attribute="removed_by")


class Relayed(Schema):
    callId = fields.String(required=True, attribute="call_id")
    to = fields.String(required=True)


class SdpRelayed(Relayed):
    sdp = Signal(required=True)
    from_ = fields.String(required=True, data_key="from", attribute="sender_id")


class CandidateRelayed(Relayed):
    candidate = Signal(required=True)
    from_ = fields.String(required=True, data_key="from", attribute="sender_id")


class StatusChanged(Schema):
    userId = fields.String(required=True, attribute="user_id")
    status = fields.String(required=True)
    lastSeen = fields.String(required=True, allow_none=True, attribute="last_seen")


class StatusSet(Schema):
    """A user's own presence setting, dumped from the `User`."""

    status = fields.String(required=True, attribute="presence_setting")
    updatedAt = fields.String(required=True, attribute="updated_at")


# what `data` holds in a successful ack, per client event
ACK_DATA: dict[str, type[Schema]] = {
    "authenticate": Authenticated,
    "send_message": MessageOut,
    "edit_message": MessageOut,
    "delete_message": MessageDeleted,
    "typing_start": Typing,
    "typing_stop": Typing,
    "mark_read": ReadMark,
    "message_delivered": MessageStatus,
    "sync": SyncOut,
    "start_call": CallOut,
    "answer_call": CallOut,
    "reject_call": CallOut,
    "end_call": CallOut,
    "webrtc_offer": Relayed,
    "webrtc_answer": Relayed,
    "webrtc_ice_candidate": Relayed,
    "update_status": StatusSet,
}
