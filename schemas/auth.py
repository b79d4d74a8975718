"""Inputs of the auth endpoints, with the seed's registration rules."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import InputSchema, text
from schemas.users import PHONE, USERNAME, password


class Register(InputSchema):
    username = fields.String(required=True, validate=USERNAME)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = password(required=True)
    phone = fields.String(allow_none=True, load_default=None, validate=PHONE)


class Login(InputSchema):
    email = text(1, 254, required=True)
    password = text(1, 1024, required=True)


class RefreshToken(InputSchema):
    refreshToken = text(1, 4096, required=True)


class ChangePassword(InputSchema):
    currentPassword = text(1, 1024, required=True)
    newPassword = password(required=True)


class ForgotPassword(InputSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))


class ResetPassword(InputSchema):
    token = text(1, 256, required=True)
    newPassword = password(required=True)


class Authenticate(InputSchema):
    """The Socket.IO `authenticate` event."""

    token = text(1, 4096, required=True)
