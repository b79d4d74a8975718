"""Uploads on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.common import InputSchema

PURPOSES = ("avatar", "message", "group")


class UploadPurpose(InputSchema):
    purpose = fields.String(load_default="message", validate=validate.OneOf(PURPOSES))


class UploadOut(Schema):
    id = fields.String()
    url = fields.Function(lambda upload: f"/api/v1/uploads/{upload.id}")
    filename = fields.String()
    size = fields.Integer()
    mimeType = fields.String(attribute="mime_type")
    purpose = fields.String()
    createdAt = fields.String(attribute="created_at")
