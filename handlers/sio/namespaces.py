"""The namespaces: `/messages`, `/calls`, `/status`, and `/` which carries them all.

Each group of events is a mixin of thin handlers that call one service method;
the root namespace inherits every group, so a client written against the seed's
single-socket examples works unchanged.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from handlers.sio.base import BaseNamespace
from handlers.sio.calls import CallEvents
from handlers.sio.messages import MessageEvents
from models.auth import Identity
from models.services import Services
from schemas.events import StatusSet
from schemas.users import PresenceUpdate

MESSAGES, CALLS, STATUS, ROOT = "/messages", "/calls", "/status", "/"
NAMESPACES = (ROOT, MESSAGES, CALLS, STATUS)  # the server events each one carries: `handlers.sio.events`
_status_set = StatusSet()


class StatusEvents(BaseNamespace):
    event_schemas: dict[str, type[Schema]] = {"update_status": PresenceUpdate}

    async def on_update_status(self, sid: str, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        dumped: dict[str, Any] = _status_set.dump(await self.services.users.set_presence(identity, data["status"]))
        return dumped


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


def build_namespaces(services: Services, auth_timeout: float) -> list[BaseNamespace]:
    return [cls(path, services, auth_timeout) for path, cls in namespace_classes().items()]
