"""What each REST handler declares about itself, for the OpenAPI document.

`@doc(...)` sits on every handler: the schemas it reads and what its `data`
holds. The document is generated from these declarations and the route table,
with the same marshmallow schemas the handlers validate with, so the two cannot
drift; a route without a declaration stops the document from being built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from marshmallow import Schema

H = TypeVar("H", bound=Callable[..., Any])
Shape = Literal["object", "list", "none", "file", "multipart"]


@dataclass(frozen=True)
class Doc:
    summary: str
    tag: str
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    data: type[Schema] | None = None  # what `data` holds (the items, for lists)
    shape: Shape = "object"  # list: `data` is an array with `pagination` beside it; file: raw bytes
    status: int = 200
    also: tuple[int, ...] = ()  # other success statuses with the same answer (200 for an idempotent repeat)
    body_required: bool = True
    auth: bool = True


def doc(**kwargs: Any) -> Callable[[H], H]:
    declared = Doc(**kwargs)

    def mark(handler: H) -> H:
        handler.__apidoc__ = declared  # type: ignore[attr-defined]
        return handler

    return mark


def declared(handler: Callable[..., Any]) -> Doc | None:
    return getattr(handler, "__apidoc__", None)
