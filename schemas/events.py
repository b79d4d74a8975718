"""The Socket.IO side of the wire: a schema for every event in both directions.

Client events are loaded with the input schemas the namespaces declare
(`event_schemas`); what their acks carry in `data` is `ACK_DATA`; every event the
server pushes is `SERVER_EVENTS`. The AsyncAPI document is generated from these
tables, and the tests validate every emitted event against it.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas.calls import CallOut, Signal
from schemas.chats import ChatOut, ParticipantOut
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
    messageId = fields.String(required=True)
    chatId = fields.String(required=True)
    content = fields.String(required=True)
    editedAt = fields.String(required=True)


class MessageDeleted(Schema):
    messageId = fields.String(required=True)
    chatId = fields.String(required=True)
    deletedAt = fields.String(required=True)


class MessageStatus(Schema):
    chatId = fields.String(required=True)
    messageId = fields.String(required=True, allow_none=True)
    userId = fields.String(required=True)
    status = fields.String(required=True)
    at = fields.String(required=True)


class ReadMark(Schema):
    chatId = fields.String(required=True)
    messageId = fields.String(required=True, allow_none=True)
    unreadCount = fields.Integer(required=True)
    at = fields.String(required=True)


class Typing(Schema):
    chatId = fields.String(required=True)
    userId = fields.String(required=True)
    username = fields.String(required=True)


class SyncOut(Schema):
    messages = fields.List(fields.Nested(MessageOut), required=True)
    changed = fields.List(fields.Nested(MessageOut), required=True)
    hasMore = fields.Boolean(required=True)
    cursor = fields.String(required=True)


class ChatDeleted(Schema):
    chatId = fields.String(required=True)
    deletedBy = fields.String(required=True)


class ParticipantAdded(Schema):
    chatId = fields.String(required=True)
    participants = fields.List(fields.Nested(ParticipantOut), required=True)
    addedBy = fields.String(required=True)


class ParticipantRemoved(Schema):
    chatId = fields.String(required=True)
    userId = fields.String(required=True)
    removedBy = fields.String(required=True)


class Relayed(Schema):
    callId = fields.String(required=True)
    to = fields.String(required=True)


class SdpRelayed(Relayed):
    sdp = Signal(required=True)
    from_ = fields.String(required=True, data_key="from")


class CandidateRelayed(Relayed):
    candidate = Signal(required=True)
    from_ = fields.String(required=True, data_key="from")


class StatusChanged(Schema):
    userId = fields.String(required=True)
    status = fields.String(required=True)
    lastSeen = fields.String(required=True, allow_none=True)


class StatusSet(Schema):
    status = fields.String(required=True)
    updatedAt = fields.String(required=True)


SERVER_EVENTS: dict[str, type[Schema]] = {
    "authenticated": Authenticated,
    "unauthorized": ErrorOut,
    "error": ErrorEvent,
    "new_message": MessageOut,
    "message_edited": MessageEdited,
    "message_deleted": MessageDeleted,
    "message_status": MessageStatus,
    "typing_start": Typing,
    "typing_stop": Typing,
    "chat_created": ChatOut,
    "chat_updated": ChatOut,
    "chat_deleted": ChatDeleted,
    "participant_added": ParticipantAdded,
    "participant_removed": ParticipantRemoved,
    "incoming_call": CallOut,
    "call_status_update": CallOut,
    "webrtc_offer": SdpRelayed,
    "webrtc_answer": SdpRelayed,
    "webrtc_ice_candidate": CandidateRelayed,
    "user_status_changed": StatusChanged,
}

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
