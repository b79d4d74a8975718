"""The namespaces: `/messages`, `/calls`, `/status`, and `/` which carries them all.

Each group of events is a mixin of thin handlers that call one service method;
the root namespace inherits every group, so a client written against the seed's
single-socket examples works unchanged.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from handlers.sio.base import BaseNamespace, Services
from handlers.sio.calls import CallEvents
from handlers.sio.messages import MessageEvents
from models.auth import Identity
from schemas.users import PresenceUpdate

MESSAGES, CALLS, STATUS, ROOT = "/messages", "/calls", "/status", "/"
NAMESPACES = (ROOT, MESSAGES, CALLS, STATUS)
# the namespace that carries each server event besides `/` (anything unlisted: `/` only)
EVENT_NAMESPACES = {
    **dict.fromkeys(
        (
            "new_message",
            "message_edited",
            "message_deleted",
            "message_status",
            "typing_start",
            "typing_stop",
            "chat_created",
            "chat_updated",
            "chat_deleted",
            "participant_added",
            "participant_removed",
        ),
        MESSAGES,
    ),
    **dict.fromkeys(
        ("incoming_call", "call_status_update", "webrtc_offer", "webrtc_answer", "webrtc_ice_candidate"), CALLS
    ),
    "user_status_changed": STATUS,
}


class StatusEvents(BaseNamespace):
    event_schemas: dict[str, type[Schema]] = {"update_status": PresenceUpdate}

    async def on_update_status(self, sid: str, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        user = await self.services.users.set_presence(identity, data["status"])
        return {"status": user.presence_setting, "updatedAt": user.updated_at}


class MessagesNamespace(MessageEvents):
    """`/messages`: chat events."""


class CallsNamespace(CallEvents):
    """`/calls`: call and signalling events."""


class StatusNamespace(StatusEvents):
    """`/status`: presence events."""


class RootNamespace(MessageEvents, CallEvents, StatusEvents):
    """`/`: every event of every namespace."""

    event_schemas = {**MessageEvents.event_schemas, **CallEvents.event_schemas, **StatusEvents.event_schemas}


def namespace_classes() -> dict[str, type[BaseNamespace]]:
    """Each namespace path and the class that serves it (the AsyncAPI channels)."""
    return {ROOT: RootNamespace, MESSAGES: MessagesNamespace, CALLS: CallsNamespace, STATUS: StatusNamespace}


def build_namespaces(services: Services) -> list[BaseNamespace]:
    return [cls(path, services) for path, cls in namespace_classes().items()]
