"""Shared pieces of the wire format: base schema, pagination, validators."""

from __future__ import annotations

from typing import Any

import orjson
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from models.errors import ValidationFailed


class InputSchema(Schema):
    """Client input: unknown fields are ignored, every known one is checked."""

    class Meta:
        unknown = EXCLUDE


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate client input; `ValidationFailed` (422 `VAL_001`) maps fields to messages."""
    if not isinstance(data, dict):
        raise ValidationFailed("Expected a JSON object", details={"_schema": ["Expected a JSON object."]})
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed(details=exc.normalized_messages()) from None
    return loaded


def text(min_len: int = 0, max_len: int | None = None, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=min_len, max=max_len), **kwargs)


class PageQuery(InputSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class PaginationOut(Schema):
    page = fields.Integer()
    limit = fields.Integer()
    total = fields.Integer()
    pages = fields.Integer()


def check_json_size(value: Any, limit: int) -> Any:
    """`value` if it encodes as JSON in at most `limit` bytes; a `ValidationError` otherwise."""
    try:
        size = len(orjson.dumps(value))
    except TypeError:  # NaN, Infinity, or not JSON at all
        raise ValidationError("Not valid JSON.") from None
    if size > limit:
        raise ValidationError(f"At most {limit} bytes of JSON.")
    return value
