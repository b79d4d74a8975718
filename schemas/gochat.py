"""The Go Chat Web door's wire format: snake_case fields, Unix-second times (`docs/gochat.md`).

Inputs load into the names the domain takes (`chatId`, `replyTo`, document
fields), so the door's handlers hand them to the same services as the other
doors. Outputs dump the same views; a message is reshaped from the dict the
WhatsChat door writes for it (`schemas.payloads.dump_one`), which is also what
crosses between processes for a `new_message`, so a REST answer and a `/ws`
frame are written by the one schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_dump, validate, validates_schema

from models.chats import owner_of
from models.views import ChatView, ParticipantView
from schemas.common import InputSchema, text
from schemas.messages import MAX_CONTENT, MESSAGE_TYPES, object_id
from schemas.users import AVATAR, password

# WhatsChat's presence as this door names it: `busy` is `dnd`; `invisible` looks `offline`, to its user too
STATUSES = ("online", "offline", "away", "dnd")
SHOWN = {"online": "online", "away": "away", "busy": "dnd", "invisible": "offline", "offline": "offline"}
CHOSEN = {"online": "online", "away": "away", "dnd": "busy", "offline": "invisible"}


def unix(value: str | None) -> int | None:
    """An ISO 8601 time of the store as whole Unix seconds."""
    return None if value is None else int(datetime.fromisoformat(value).timestamp())


class UnixTime(fields.Field):  # type: ignore[type-arg]
    """A stored ISO 8601 time, written as Unix seconds."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> int | None:
        return unix(value)


def avatar_url() -> fields.String:
    return fields.String(allow_none=True, attribute="avatar", validate=[validate.Length(max=2048), AVATAR])


# inputs ---------------------------------------------------------------------------------------------------------------


class Register(InputSchema):
    name = text(1, 64, required=True, attribute="display_name")
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = password(required=True)
    avatar_url = avatar_url()


class Login(InputSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=128))


class Refresh(InputSchema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class ProfileUpdate(InputSchema):
    name = text(1, 64, attribute="display_name")
    avatar_url = avatar_url()
    bio = text(0, 100, attribute="status")


class StatusUpdate(InputSchema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))


class PageQuery(InputSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class UserSearchQuery(PageQuery):
    query = text(1, 100, required=True)


def sort(fields_allowed: tuple[str, ...], default: str) -> fields.String:
    """`field:asc|desc` over the fields a list can be ordered by."""
    options = [f"{name}:{way}" for name in fields_allowed for way in ("asc", "desc")]
    return fields.String(load_default=default, validate=validate.OneOf(options))


class ChatListQuery(PageQuery):
    sort = sort(("updated_at", "created_at"), "updated_at:desc")


class HistoryQuery(PageQuery):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    sort = sort(("created_at",), "created_at:desc")


class SearchQuery(PageQuery):
    query = text(1, 100, required=True)


class CreatePrivate(InputSchema):
    participant_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class SendMessage(InputSchema):
    """A message over REST (the chat is in the path) or `/ws` (`chat_id` in the frame)."""

    content = fields.String(load_default="", validate=validate.Length(max=MAX_CONTENT))
    type = fields.String(load_default="text", validate=validate.OneOf(MESSAGE_TYPES))
    reply_to = object_id(load_default=None, allow_none=True, attribute="replyTo")
    client_id = text(1, 100, load_default=None, allow_none=True, attribute="clientId")

    @validates_schema
    def _text_has_content(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type", "text") == "text" and not data.get("content", "").strip():
            raise ValidationError(f"Text messages need 1 to {MAX_CONTENT} characters.", "content")


class SendFrame(SendMessage):
    chat_id = fields.String(required=True, validate=validate.Length(min=1, max=64), attribute="chatId")


class EditMessage(InputSchema):
    content = fields.String(required=True, validate=validate.Length(min=1, max=MAX_CONTENT))


class MarkRead(InputSchema):
    message_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))


class MarkReadFrame(MarkRead):
    chat_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class ChatRef(InputSchema):
    chat_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class CreateGroup(InputSchema):
    name = text(1, 100, required=True)
    description = text(0, 500, load_default="")
    avatar_url = avatar_url()
    member_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        required=True,
        validate=validate.Length(max=256),
        attribute="participants",
    )


class UpdateGroup(InputSchema):
    name = text(1, 100)
    description = text(0, 500)
    avatar_url = avatar_url()


class AddMembers(InputSchema):
    member_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), required=True, validate=validate.Length(min=1, max=256)
    )


# outputs --------------------------------------------------------------------------------------------------------------


class Pagination(Schema):
    page = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    total = fields.Integer(required=True)


class UserOut(Schema):
    """A user as others see them (a `models.users.UserView`): no email."""

    user_id = fields.String(attribute="id", required=True)
    name = fields.String(required=True)
    avatar_url = fields.String(attribute="avatar", allow_none=True)
    status = fields.Function(lambda view: SHOWN.get(view.presence, "offline"), required=True)
    bio = fields.String(attribute="status")
    last_seen = UnixTime(allow_none=True)
    created_at = UnixTime()
    updated_at = UnixTime()


class ProfileOut(UserOut):
    """The caller's own profile, and the user in auth answers: with the email."""

    email = fields.String(required=True)


class UserPage(Schema):
    users = fields.List(fields.Nested(UserOut), required=True)
    pagination = fields.Nested(Pagination, required=True)


class LoginOut(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    expires_in = fields.Integer(required=True)
    user = fields.Nested(ProfileOut, required=True)


class RefreshOut(Schema):
    access_token = fields.String(required=True)
    expires_in = fields.Integer(required=True)


class StatusOut(Schema):
    status = fields.String(required=True)
    last_seen = fields.Integer(allow_none=True)


class MessageOut(Schema):
    """A message, from the dict the WhatsChat door writes for it (`schemas.payloads.dump_one`)."""

    message_id = fields.String(attribute="id", required=True)
    chat_id = fields.String(attribute="chatId", required=True)
    sender_id = fields.String(attribute="senderId", required=True)
    sender_name = fields.Function(lambda m: (m["sender"] or {}).get("name"), allow_none=True)
    sender_avatar = fields.Function(lambda m: (m["sender"] or {}).get("avatar"), allow_none=True)
    content = fields.String(required=True)
    type = fields.String(required=True)
    status = fields.String(required=True)
    reply_to = fields.String(attribute="replyTo", allow_none=True)
    client_id = fields.String(attribute="clientId", allow_none=True)
    edited_at = UnixTime(attribute="editedAt", allow_none=True)
    created_at = UnixTime(attribute="createdAt", required=True)


class MessagePage(Schema):
    messages = fields.List(fields.Nested(MessageOut), required=True)
    pagination = fields.Nested(Pagination, required=True)


class EditOut(Schema):
    message_id = fields.String(attribute="id", required=True)
    content = fields.String(required=True)
    edited_at = UnixTime(attribute="editedAt", required=True)
    status = fields.Constant("edited", required=True)


class ReadOut(Schema):
    chat_id = fields.String(required=True)
    message_id = fields.String(allow_none=True, required=True)
    unread_count = fields.Integer(required=True)


class ParticipantOut(Schema):
    user_id = fields.String(attribute="id", required=True)
    name = fields.String(required=True)
    avatar_url = fields.String(attribute="avatar", allow_none=True)
    status = fields.Function(lambda p: SHOWN.get(p.presence or "offline", "offline"), required=True)


class LastMessageOut(Schema):
    message_id = fields.String(attribute="message.id", required=True)
    content = fields.String(attribute="message.content", required=True)
    sender_id = fields.String(attribute="message.sender_id", required=True)
    created_at = UnixTime(attribute="message.created_at", required=True)


def _chat_name(view: ChatView) -> str | None:
    return view.other.name if view.other is not None else view.name


def _chat_avatar(view: ChatView) -> str | None:
    return view.other.avatar if view.other is not None else view.chat.avatar


class ChatOut(Schema):
    chat_id = fields.String(attribute="chat.id", required=True)
    type = fields.String(attribute="chat.type", required=True)
    name = fields.Function(_chat_name, allow_none=True)
    avatar_url = fields.Function(_chat_avatar, allow_none=True)
    description = fields.String(attribute="chat.description")
    participants = fields.List(fields.Nested(ParticipantOut), required=True)
    last_message = fields.Nested(LastMessageOut, allow_none=True)
    unread_count = fields.Integer(required=True)
    created_at = UnixTime(attribute="chat.created_at", required=True)
    updated_at = UnixTime(attribute="chat.last_activity", required=True)  # a message or a group change


class ChatPage(Schema):
    chats = fields.List(fields.Nested(ChatOut), required=True)
    pagination = fields.Nested(Pagination, required=True)


class GroupMemberOut(Schema):
    user_id = fields.String(required=True)
    name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True)
    role = fields.String(required=True, validate=validate.OneOf(["owner", "admin", "member"]))
    joined_at = fields.Integer(required=True)


class GroupOut(Schema):
    """A group (a `ChatView` of a group chat): its owner, and each member's role with `owner` among them."""

    group_id = fields.String(required=True)
    chat_id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String()
    avatar_url = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True, required=True)
    members = fields.List(fields.Nested(GroupMemberOut), required=True)
    member_count = fields.Integer(required=True)
    created_at = fields.Integer(required=True)
    updated_at = fields.Integer(required=True)

    @pre_dump
    def _from_view(self, view: ChatView, **_: Any) -> dict[str, Any]:
        chat, owner = view.chat, owner_of(view.chat)
        return {
            "group_id": chat.id,
            "chat_id": chat.id,
            "name": chat.name,
            "description": chat.description,
            "avatar_url": chat.avatar,
            "owner_id": owner,
            "members": [_member(p, owner) for p in view.participants],
            "member_count": len(view.participants),
            "created_at": unix(chat.created_at),
            "updated_at": unix(chat.updated_at),
        }


def _member(member: ParticipantView, owner: str | None) -> dict[str, Any]:
    role = "owner" if member.id == owner else member.role
    return {
        "user_id": member.id,
        "name": member.name,
        "avatar_url": member.avatar,
        "role": role,
        "joined_at": unix(member.joined_at),
    }


class AddedMember(Schema):
    user_id = fields.String(attribute="id", required=True)
    name = fields.String(required=True)
    avatar_url = fields.String(attribute="avatar", allow_none=True)


class MembersAddedOut(Schema):
    group_id = fields.String(required=True)
    added_members = fields.List(fields.Nested(AddedMember), required=True)


class UploadOut(Schema):
    file_id = fields.String(attribute="id", required=True)
    url = fields.Function(lambda upload: f"/api/uploads/{upload.id}", required=True)
    filename = fields.String(required=True)
    size = fields.Integer(required=True)
    mime_type = fields.String(required=True)
    created_at = UnixTime(required=True)
