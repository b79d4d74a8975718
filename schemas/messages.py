"""Messages on the wire and the inputs that make and change them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas.common import InputSchema, PageQuery, PaginationOut, check_json_size, load, text

MESSAGE_TYPES = ("text", "image", "video", "audio", "file")
MAX_CONTENT = 10_000
MAX_METADATA_BYTES = 8 * 1024
ID = validate.Regexp(r"^[0-9a-f]{24}$", error="Not a valid id.")


def object_id(**kwargs: Any) -> fields.String:
    return fields.String(validate=ID, **kwargs)


class Metadata(fields.Dict):
    """A JSON object of at most 8 KiB, so one message cannot carry megabytes beside its content."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        # marshmallow leaves Mapping._deserialize unannotated; `untyped_calls_exclude` does not reach super()
        loaded = super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-untyped-call]
        return check_json_size(loaded, MAX_METADATA_BYTES)


class SendMessage(InputSchema):
    chatId = object_id(required=True)
    content = fields.String(load_default="", validate=validate.Length(max=MAX_CONTENT))
    type = fields.String(load_default="text", validate=validate.OneOf(MESSAGE_TYPES))
    metadata = Metadata(keys=fields.String(), load_default=None, allow_none=True)
    replyTo = object_id(load_default=None, allow_none=True)
    clientId = text(1, 100, load_default=None, allow_none=True)

    fast_load: ClassVar[Callable[[Any], dict[str, Any]]]  # set below, once `load_send_message` exists

    @validates_schema
    def _text_has_content(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type", "text") == "text" and not data.get("content", "").strip():
            raise ValidationError("Text messages need 1 to 10000 characters.", "content")


_SEND_MESSAGE = SendMessage()
_HEX = frozenset("0123456789abcdef")


def load_send_message(data: Any) -> dict[str, Any]:
    """`SendMessage().load` in microseconds for the payload nearly every send has.

    Marshmallow walks every field generically and took a fifth of a send's time.
    A payload of strings only (`chatId`, `content`, `type`, `clientId`) that the
    schema would accept as it stands is read here; anything else (metadata, a
    reply, a wrong type or value) goes through the schema, which stays the one
    definition of what is valid and writes every error. A property test holds the
    two to the same answers.
    """
    if type(data) is dict and data.get("metadata") is None and data.get("replyTo") is None:
        chat_id = data.get("chatId")
        content = data.get("content", "")
        kind = data.get("type", "text")
        client_id = data.get("clientId")
        if (
            type(chat_id) is str
            and len(chat_id) == 24
            and _HEX.issuperset(chat_id)
            and type(content) is str
            and len(content) <= MAX_CONTENT
            and kind in MESSAGE_TYPES
            and (kind != "text" or content.strip())
            and (client_id is None or (type(client_id) is str and 1 <= len(client_id) <= 100))
        ):
            return {
                "chatId": chat_id,
                "content": content,
                "type": kind,
                "metadata": None,
                "replyTo": None,
                "clientId": client_id,
            }
    return load(_SEND_MESSAGE, data)


SendMessage.fast_load = staticmethod(load_send_message)  # what the socket handlers load with


class EditMessage(InputSchema):
    content = fields.String(required=True, validate=validate.Length(min=1, max=MAX_CONTENT))
    metadata = Metadata(keys=fields.String(), allow_none=True)


class EditMessageEvent(EditMessage):
    messageId = object_id(required=True)


class MessageRef(InputSchema):
    messageId = object_id(required=True)


class ChatRef(InputSchema):
    chatId = object_id(required=True)


class MarkRead(InputSchema):
    chatId = object_id(required=True)
    messageId = object_id(load_default=None, allow_none=True)


class ReadBody(InputSchema):
    messageId = object_id(load_default=None, allow_none=True)


class HistoryQuery(PageQuery):
    """Pages by number (`page`) or by cursor (`before`/`after`), never both.

    A cursor names a place in the history, a page number another; taken together
    one of them would be ignored, and a client following `pagination` would skip
    or repeat messages.
    """

    before = object_id(load_default=None)
    after = object_id(load_default=None)
    search = text(1, 200, load_default=None)

    @validates_schema(pass_original=True)
    def _one_way_to_page(self, data: dict[str, Any], original: Any, **_: Any) -> None:
        if "page" in original and (data.get("before") or data.get("after")):
            raise ValidationError("A page number does not combine with before/after: follow the cursor.", "page")


class MessagePaginationOut(PaginationOut):
    """A history page's place: `page`/`pages` by number, null when the page was read by cursor."""

    page = fields.Integer(allow_none=True)
    pages = fields.Integer(allow_none=True)
    hasMore = fields.Boolean(required=True)


class Sync(InputSchema):
    chatId = object_id(load_default=None, allow_none=True)
    after = fields.String(required=True, validate=validate.Length(min=1, max=40))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=1000))


class SenderOut(Schema):
    id = fields.String()
    username = fields.String()
    name = fields.String()  # the display name (the username when none was chosen)
    avatar = fields.String(allow_none=True)


class MessageOut(Schema):
    id = fields.String(attribute="message.id")
    chatId = fields.String(attribute="message.chat_id")
    senderId = fields.String(attribute="message.sender_id")
    sender = fields.Nested(SenderOut, allow_none=True)
    content = fields.String(attribute="message.content")
    type = fields.String(attribute="message.type")
    metadata = fields.Dict(attribute="message.metadata", allow_none=True)
    replyTo = fields.String(attribute="message.reply_to", allow_none=True)
    clientId = fields.String(attribute="message.client_id", allow_none=True)
    status = fields.String()
    editedAt = fields.String(attribute="message.edited_at", allow_none=True)
    deleted = fields.Boolean(attribute="message.deleted")
    createdAt = fields.String(attribute="message.created_at")
    updatedAt = fields.String(attribute="message.updated_at")
