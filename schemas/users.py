"""Users on the wire, and the inputs that change them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from schemas.common import InputSchema, PageQuery, text

USERNAME = validate.Regexp(r"^[A-Za-z0-9_]{3,20}\Z", error="3 to 20 letters, digits or underscores.")
PHONE = validate.Regexp(r"^1[3-9][0-9]{9}\Z", error="Not a valid mainland China mobile number.")
PRESENCE_SETTINGS = ("online", "away", "busy", "invisible")
# as patterns, so the published schema says what the server checks
STRONG = validate.Regexp(
    r"^(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])", error="Must contain an upper-case letter, a lower-case letter and a digit."
)
AVATAR = validate.Regexp(r"^(https?://[^\s/]+|/)[^\s]*\Z", error="An http(s) URL or a path on this server.")


def password(**kwargs: Any) -> fields.String:
    """At least 6 characters with upper, lower and digit; at most 128 (any script)."""
    return fields.String(validate=[validate.Length(min=6, max=128), STRONG], **kwargs)


def avatar() -> fields.String:
    return fields.String(allow_none=True, validate=[validate.Length(max=2048), AVATAR])


class UserOut(Schema):
    """A user as others see them: never a hash, token or secret."""

    id = fields.String()
    email = fields.String()
    username = fields.String()
    name = fields.String()  # the display name (the username when none was chosen)
    phone = fields.String(allow_none=True)
    avatar = fields.String(allow_none=True)
    status = fields.String()
    presence = fields.String()
    lastSeen = fields.String(attribute="last_seen", allow_none=True)
    role = fields.String()
    createdAt = fields.String(attribute="created_at")
    updatedAt = fields.String(attribute="updated_at")


class ProfileUpdate(InputSchema):
    username = fields.String(validate=USERNAME)
    name = fields.String(attribute="display_name", allow_none=True, validate=validate.Length(min=1, max=64))
    status = text(0, 100)
    avatar = avatar()
    phone = fields.String(allow_none=True, validate=PHONE)


class AdminUserUpdate(ProfileUpdate):
    role = fields.String(validate=validate.OneOf(["user", "admin"]))


class UserListQuery(PageQuery):
    search = text(0, 100, load_default=None)


class PresenceUpdate(InputSchema):
    status = fields.String(required=True, validate=validate.OneOf(PRESENCE_SETTINGS))
