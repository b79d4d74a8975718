"""Checks what the server emits against the published AsyncAPI document.

The harness wraps the Socket.IO server's `emit` with `EventContract.check`:
every event any test makes the server send is validated against the payload
schema the document gives for it, and a mismatch fails the test at teardown.
Acks are checked the same way by `Socket.call`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from handlers.apispec import build_asyncapi

DOCUMENT_URI = "urn:whatschat:asyncapi"


@cache
def _document() -> dict[str, Any]:
    return build_asyncapi()


@cache
def _validator(pointer: str) -> Draft202012Validator:
    resource = Resource.from_contents(_document(), default_specification=DRAFT202012)
    registry = Registry().with_resource(DOCUMENT_URI, resource)
    return Draft202012Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry)


def problems(pointer: str, payload: Any) -> list[str]:
    errors = _validator(pointer).iter_errors(payload)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


def event_problems(event: str, payload: Any) -> list[str]:
    """Why `payload` is not a valid server event `event` (an unknown event is a problem too)."""
    if event not in _document()["components"]["messages"]:
        return [f"event {event!r} is not in the AsyncAPI document"]
    return problems(f"/components/messages/{event}/payload", payload)


def ack_problems(event: str, payload: Any) -> list[str]:
    if f"{event}_ack" not in _document()["components"]["messages"]:
        return []  # an unknown client event: the answer is the error envelope, checked by the tests themselves
    return problems(f"/components/messages/{event}_ack/payload", payload)


class EventContract:
    """Collects every mismatch between what the server emitted and the document."""

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.checked = 0

    def check(self, event: str, payload: Any) -> None:
        self.checked += 1
        for problem in event_problems(event, payload):
            self.mismatches.append(f"{event}: {problem}")
