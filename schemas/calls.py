"""Calls on the wire, and the inputs that start, answer and signal them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from schemas.chats import IdList
from schemas.common import InputSchema, PageQuery, check_json_size
from schemas.messages import object_id

MAX_SIGNAL_BYTES = 64 * 1024


class Signal(fields.Raw):
    """An SDP or ICE candidate as the browser made it (an object or a string), at most 64 KiB."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict | str):
            raise ValidationError("An object or a string.")
        return check_json_size(value, MAX_SIGNAL_BYTES)


class StartCall(InputSchema):
    type = fields.String(required=True, validate=validate.OneOf(["audio", "video"]))
    participants = IdList(load_default=list, validate=validate.Length(max=50))
    chatId = object_id(load_default=None, allow_none=True)


class CallRef(InputSchema):
    callId = object_id(required=True)


class Offer(CallRef):
    to = object_id(required=True)
    sdp = Signal(required=True)


class IceCandidate(CallRef):
    to = object_id(required=True)
    candidate = Signal(required=True)


class CallListQuery(PageQuery):
    type = fields.String(load_default=None, validate=validate.OneOf(["audio", "video"]))


class CallParticipantOut(Schema):
    id = fields.String(attribute="participant.user_id")
    username = fields.Function(lambda view: view.user.username if view.user else None)
    avatar = fields.Function(lambda view: view.user.avatar if view.user else None)
    status = fields.String(attribute="participant.status")
    reason = fields.String(attribute="participant.reason", allow_none=True)
    joinedAt = fields.String(attribute="participant.joined_at", allow_none=True)
    leftAt = fields.String(attribute="participant.left_at", allow_none=True)


class CallOut(Schema):
    id = fields.String(attribute="call.id")
    type = fields.String(attribute="call.type")
    chatId = fields.String(attribute="call.chat_id", allow_none=True)
    initiatorId = fields.String(attribute="call.initiator_id")
    status = fields.String(attribute="call.status")
    participants = fields.List(fields.Nested(CallParticipantOut))
    duration = fields.Integer(attribute="call.duration", allow_none=True)
    createdAt = fields.String(attribute="call.created_at")
    startedAt = fields.String(attribute="call.started_at", allow_none=True)
    endedAt = fields.String(attribute="call.ended_at", allow_none=True)
