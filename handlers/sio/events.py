"""The event registry: every server event, its payload schema, the namespaces that carry it, what it means.

One table, read by everything that needs to know about server events: the
notifier (which namespaces to emit on, and how to dump the view a service hands
it), the AsyncAPI document (`handlers.apispec`) and the tests that validate
every emit against that document. Its keys are `models.events.Event`, the names
the services use; a member without an entry here stops this module from
importing, so an event cannot be emitted without a schema and namespaces.

Every event goes out on `/`, and on the namespace named here; the three the
namespace base sends (`authenticated`, `unauthorized`, `error`) go to the socket
concerned on whichever namespace it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

from handlers.sio.namespaces import CALLS, MESSAGES, NAMESPACES, ROOT, STATUS
from models.events import Event
from schemas import events as wire
from schemas.calls import CallOut
from schemas.chats import ChatOut
from schemas.messages import MessageOut
from schemas.payloads import dump_one


@dataclass(frozen=True, slots=True)
class EventSpec:
    schema: type[Schema]  # what the payload is (the AsyncAPI document shows it)
    namespaces: tuple[str, ...]  # which namespaces carry it, `/` first
    description: str
    dump: Callable[[Any], Any]  # the view a service hands the notifier, as the payload


def _spec(
    schema: type[Schema], namespace: str | None, description: str, dump: Callable[[Any], Any] | None = None
) -> EventSpec:
    """`namespace`: the one beside `/` that carries the event; None for every namespace."""
    namespaces = NAMESPACES if namespace is None else (ROOT, namespace)
    return EventSpec(schema, namespaces, description, dump or schema().dump)


EVENTS: dict[Event, EventSpec] = {
    Event.AUTHENTICATED: _spec(wire.Authenticated, None, "This socket is signed in as the user given."),
    Event.UNAUTHORIZED: _spec(
        wire.ErrorOut, None, "This socket's token was refused, timed out or signed out; it is disconnected next."
    ),
    Event.ERROR: _spec(wire.ErrorEvent, None, "A client event sent without an ack failed."),
    # `dump_one`: the same dict the sender's ack carries, written once (see `schemas.payloads`)
    Event.NEW_MESSAGE: _spec(MessageOut, MESSAGES, "A message in one of your chats.", dump_one),
    Event.MESSAGE_EDITED: _spec(wire.MessageEdited, MESSAGES, "A message was edited."),
    Event.MESSAGE_DELETED: _spec(wire.MessageDeleted, MESSAGES, "A message was deleted (it stays as a tombstone)."),
    Event.MESSAGE_STATUS: _spec(
        wire.MessageStatus, MESSAGES, "A member received (`delivered`) or read (`read`) up to a message."
    ),
    Event.TYPING_START: _spec(wire.Typing, MESSAGES, "Another member started typing."),
    Event.TYPING_STOP: _spec(wire.Typing, MESSAGES, "Another member stopped typing."),
    Event.CHAT_CREATED: _spec(ChatOut, MESSAGES, "You are in a new chat (created, or you were added)."),
    Event.CHAT_UPDATED: _spec(ChatOut, MESSAGES, "A group's name, description, avatar, settings or admins changed."),
    Event.CHAT_DELETED: _spec(wire.ChatDeleted, MESSAGES, "A chat was deleted."),
    Event.PARTICIPANT_ADDED: _spec(wire.ParticipantAdded, MESSAGES, "Members were added to a group."),
    Event.PARTICIPANT_REMOVED: _spec(wire.ParticipantRemoved, MESSAGES, "A member left or was removed."),
    Event.INCOMING_CALL: _spec(CallOut, CALLS, "You are being called."),
    Event.CALL_STATUS_UPDATE: _spec(CallOut, CALLS, "A call you are in changed."),
    Event.WEBRTC_OFFER: _spec(wire.SdpRelayed, CALLS, "A participant's WebRTC offer, for you."),
    Event.WEBRTC_ANSWER: _spec(wire.SdpRelayed, CALLS, "A participant's WebRTC answer, for you."),
    Event.WEBRTC_ICE_CANDIDATE: _spec(wire.CandidateRelayed, CALLS, "A participant's ICE candidate, for you."),
    Event.USER_STATUS_CHANGED: _spec(
        wire.StatusChanged, STATUS, "Someone who shares a chat with you came online, went away or offline."
    ),
}


def unregistered(events: Mapping[Event, EventSpec]) -> list[str]:
    """The members of `Event` a registry leaves out."""
    return [event.value for event in Event if event not in events]


if missing := unregistered(EVENTS):  # a half-registered event: refuse to start rather than emit it unschema'd
    raise RuntimeError(f"events without a schema and namespaces in the registry: {', '.join(missing)}")


def spec_of(event: Event) -> EventSpec:
    """The registry's entry; a name the registry does not know is a programming error, said plainly."""
    try:
        return EVENTS[event]
    except KeyError:
        raise LookupError(f"{event!r} is not a registered server event (models.events.Event)") from None


def payload(event: Event, view: Any) -> Any:
    """The view a service handed the notifier, dumped with the event's schema: the payload on the wire."""
    return spec_of(event).dump(view)
