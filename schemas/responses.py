"""What REST answers carry in `data` where it is not a plain document, and the error envelope."""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas.calls import CallOut
from schemas.chats import ParticipantOut
from schemas.common import PaginationOut
from schemas.events import ErrorOut
from schemas.messages import MessageOut, MessagePaginationOut
from schemas.users import UserOut


class TokensOut(Schema):
    token = fields.String(required=True)
    refreshToken = fields.String(required=True)


class AuthOut(TokensOut):
    user = fields.Nested(UserOut, required=True)


class StatusOption(Schema):
    key = fields.String(required=True)
    label = fields.String(required=True)
    description = fields.String(required=True)


class HealthServices(Schema):
    database = fields.String()
    websocket = fields.String()
    redis = fields.String(metadata={"description": "present when redis.url is set: healthy or unhealthy"})


class HealthOut(Schema):
    status = fields.String(required=True, metadata={"description": "healthy, degraded (Redis down) or unhealthy"})
    timestamp = fields.String()
    uptime = fields.Float()
    version = fields.String()
    process = fields.String(metadata={"description": "the answering server process: hostname:pid:random"})
    services = fields.Nested(HealthServices)
    connections = fields.Dict()


class AddedParticipants(Schema):
    addedParticipants = fields.List(fields.Nested(ParticipantOut), required=True)


class RoleOut(Schema):
    userId = fields.String(required=True, attribute="user_id")
    role = fields.String(required=True)


class UserPage(Schema):
    users = fields.List(fields.Nested(UserOut), required=True)
    pagination = fields.Nested(PaginationOut, required=True)


class MessagePage(Schema):
    messages = fields.List(fields.Nested(MessageOut), required=True)
    pagination = fields.Nested(MessagePaginationOut, required=True)


class CallPage(Schema):
    calls = fields.List(fields.Nested(CallOut), required=True)
    pagination = fields.Nested(PaginationOut, required=True)


class ErrorEnvelope(Schema):
    success = fields.Boolean(required=True)
    message = fields.String(required=True)
    error = fields.Nested(ErrorOut, required=True)
    data = fields.Raw()
