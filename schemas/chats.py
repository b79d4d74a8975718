"""Chats and groups on the wire and the inputs that make and change them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from schemas.common import InputSchema, PageQuery, text
from schemas.messages import MessageOut, object_id
from schemas.users import avatar

MAX_PARTICIPANTS = 500


class IdList(fields.List[str]):
    """A list of ids whose errors name the item as text: an int key would not serialize as a JSON object key."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(object_id(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as exc:
            if not isinstance(exc.messages, dict):
                raise
            flat = [f"Item {index}: {text}" for index, texts in exc.messages.items() for text in texts]
            raise ValidationError(flat) from None


class ParticipantOut(Schema):
    id = fields.String()
    username = fields.String()
    name = fields.String()  # the display name (the username when none was chosen)
    avatar = fields.String(allow_none=True)
    role = fields.String()
    joinedAt = fields.String(attribute="joined_at")
    presence = fields.String(allow_none=True)


class ChatSettingsOut(Schema):
    muted = fields.Boolean()
    archived = fields.Boolean()


class ChatOut(Schema):
    """`settings`, `unreadCount` and `role` are the viewer's own (absent in broadcasts)."""

    id = fields.String(attribute="chat.id")
    name = fields.String(allow_none=True)
    type = fields.String(attribute="chat.type")
    description = fields.String(attribute="chat.description")
    avatar = fields.String(attribute="chat.avatar", allow_none=True)
    onlyAdminsCanAdd = fields.Boolean(attribute="chat.only_admins_add")
    participants = fields.List(fields.Nested(ParticipantOut))
    participantCount = fields.Function(lambda view: len(view.participants))
    lastMessage = fields.Nested(MessageOut, attribute="last_message", allow_none=True)
    unreadCount = fields.Integer(attribute="unread_count", allow_none=True)
    settings = fields.Nested(ChatSettingsOut, allow_none=True)
    role = fields.String(allow_none=True)
    createdBy = fields.String(attribute="chat.created_by")
    createdAt = fields.String(attribute="chat.created_at")
    updatedAt = fields.String(attribute="chat.updated_at")
    lastActivity = fields.String(attribute="chat.last_activity")


class CreateChat(InputSchema):
    type = fields.String(required=True, validate=validate.OneOf(["private", "group"]))
    name = text(1, 100, load_default=None)
    description = text(0, 500, load_default="")
    avatar = avatar()
    participants = IdList(required=True, validate=validate.Length(min=1, max=MAX_PARTICIPANTS))
    onlyAdminsCanAdd = fields.Boolean(load_default=False)


class CreateGroup(InputSchema):
    name = text(1, 100, required=True)
    description = text(0, 500, load_default="")
    avatar = avatar()
    participants = IdList(required=True, validate=validate.Length(max=MAX_PARTICIPANTS))
    onlyAdminsCanAdd = fields.Boolean(load_default=False)


class UpdateChat(InputSchema):
    name = text(1, 100)
    description = text(0, 500)
    avatar = avatar()
    onlyAdminsCanAdd = fields.Boolean()


class AddParticipants(InputSchema):
    userIds = IdList(required=True, validate=validate.Length(min=1, max=MAX_PARTICIPANTS))


class SetRole(InputSchema):
    role = fields.String(required=True, validate=validate.OneOf(["admin", "member"]))


class ChatListQuery(PageQuery):
    archived = fields.Boolean(load_default=False)
