"""The event registry: every server event registered once, with a schema, namespaces and a description.

The harness (`tests/conftest.py`) also checks, at every notifier call of every
test, that the domain names its events through `Event`; here the registry
itself: complete, refusing what it does not know, and writing each event's view
as the AsyncAPI document says. A send serialises its message once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from marshmallow import Schema

from handlers.apispec import build_asyncapi
from handlers.sio.events import EVENTS, payload, unregistered
from handlers.sio.namespaces import NAMESPACES, ROOT
from handlers.sio.notifier import SocketNotifier
from models.clock import new_id, now_iso
from models.documents import Call, CallParticipant, Chat, Member, Message, User
from models.events import Event
from models.users import UserView
from models.views import (
    CallParticipantView,
    CallView,
    ChatDeletion,
    ChatView,
    MemberRemoved,
    MembersAdded,
    MessageDeletion,
    MessageEdit,
    MessageView,
    ParticipantView,
    Receipt,
    Signal,
    StatusChange,
    TypingNotice,
)
from schemas import payloads
from tests.api_contract import event_problems
from tests.chat_support import connect, private_chat


def test_every_event_has_a_schema_namespaces_and_a_description() -> None:
    assert unregistered(EVENTS) == []
    for event in Event:
        spec = EVENTS[event]
        assert issubclass(spec.schema, Schema), event
        assert spec.namespaces[0] == ROOT and set(spec.namespaces) <= set(NAMESPACES), event
        assert len(spec.namespaces) == len(set(spec.namespaces)) >= 2, event
        assert spec.description.strip(), event


def test_a_registry_that_leaves_an_event_out_is_named() -> None:
    partial = {event: spec for event, spec in EVENTS.items() if event is not Event.TYPING_STOP}
    assert unregistered(partial) == ["typing_stop"]


def test_the_asyncapi_document_is_the_registry() -> None:
    document = build_asyncapi()
    for event, spec in EVENTS.items():
        message = document["components"]["messages"][event.value]
        assert message["summary"] == spec.description
        for channel in document["channels"].values():
            assert (event.value in channel["messages"]) == (channel["address"] in spec.namespaces), (event, channel)


def test_an_unregistered_name_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(LookupError, match="no_such_event"):
        payload("no_such_event", {})  # type: ignore[arg-type]

    class NoServer:
        manager = None

    notifier = SocketNotifier(NoServer())  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="no_such_event"):  # the notifier dumps through the same registry
        asyncio.run(notifier.to_users(["someone"], "no_such_event", {}))  # type: ignore[arg-type]


def _samples() -> dict[Event, Any]:
    """A view of each event as a service hands it to the notifier (the namespace base's three as it sends them)."""
    now, chat_id, call_id = now_iso(), new_id(), new_id()
    alice = User(new_id(), "alice@example.com", "alice", "x", now, now, avatar="/api/v1/uploads/a")
    bob = User(new_id(), "bob@example.com", "bob", "x", now, now)
    message = Message(new_id(), chat_id, alice.id, "hi", "text", now, now, metadata={"k": [1, None]})
    chat = Chat(chat_id, "group", alice.id, now, now, now, name="g", last_message_id=message.id)
    members = [Member(chat_id, alice.id, "admin", now), Member(chat_id, bob.id, "member", now)]
    participants = [ParticipantView(alice, members[0], None), ParticipantView(bob, members[1], None)]
    chat_view = ChatView(chat, "g", participants, MessageView(message, alice, "sent"))
    call = Call(call_id, "audio", alice.id, "ringing", now, now, [CallParticipant(alice.id, "answered", now)])
    call_view = CallView(call, [CallParticipantView(call.participants[0], alice)])
    return {
        Event.AUTHENTICATED: {"user": UserView(alice, "online", None)},
        Event.UNAUTHORIZED: {"code": "AUTH_001", "message": "Authenticate first"},
        Event.ERROR: {"code": "VALIDATION_ERROR", "message": "Invalid", "details": None, "event": "sync"},
        Event.NEW_MESSAGE: MessageView(message, alice, "sent"),
        Event.MESSAGE_EDITED: MessageEdit(message.id, chat_id, "hello", now),
        Event.MESSAGE_DELETED: MessageDeletion(message.id, chat_id, now),
        Event.MESSAGE_STATUS: Receipt(chat_id, message.id, bob.id, "read", now),
        Event.TYPING_START: TypingNotice(chat_id, bob.id, "bob", "Bob B."),
        Event.TYPING_STOP: TypingNotice(chat_id, bob.id, "bob", "Bob B."),
        Event.CHAT_CREATED: chat_view,
        Event.CHAT_UPDATED: chat_view,
        Event.CHAT_DELETED: ChatDeletion(chat_id, alice.id),
        Event.PARTICIPANT_ADDED: MembersAdded(chat_id, participants[1:], alice.id),
        Event.PARTICIPANT_REMOVED: MemberRemoved(chat_id, bob.id, alice.id),
        Event.INCOMING_CALL: call_view,
        Event.CALL_STATUS_UPDATE: call_view,
        Event.WEBRTC_OFFER: Signal(call_id, alice.id, bob.id, sdp={"type": "offer", "sdp": "v=0"}),
        Event.WEBRTC_ANSWER: Signal(call_id, bob.id, alice.id, sdp="v=0"),
        Event.WEBRTC_ICE_CANDIDATE: Signal(call_id, alice.id, bob.id, candidate={"candidate": "c"}),
        Event.USER_STATUS_CHANGED: StatusChange(bob.id, "offline", now),
    }


def test_each_view_is_written_as_the_document_says() -> None:
    samples = _samples()
    assert set(samples) == set(Event)  # a new event needs a sample here too
    for event, view in samples.items():
        assert event_problems(event.value, payload(event, view)) == [], event
    signal = payload(Event.WEBRTC_OFFER, samples[Event.WEBRTC_OFFER])
    assert signal["from"] == samples[Event.WEBRTC_OFFER].sender_id and "candidate" not in signal


async def test_a_send_serialises_its_message_once(server, api, make_user, sockets, monkeypatch) -> None:
    """The broadcast and the sender's ack are one dict, written once (docs/performance.md)."""
    written: list[str] = []
    entry = payloads._page_entry

    def counted(view: MessageView) -> dict[str, Any]:
        written.append(view.message.content)
        return entry(view)

    monkeypatch.setattr(payloads, "_page_entry", counted)
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    bob_socket = await connect(sockets, bob)
    alice_socket = await connect(sockets, alice)
    answer = await alice_socket.call("send_message", {"chatId": chat, "content": "once"})
    (delivered,) = await bob_socket.seen.wait_for("new_message")
    assert delivered == answer["data"]
    status, body = await api.post("/messages", json={"chatId": chat, "content": "once by REST"}, token=alice.token)
    assert status == 201 and body["data"]["content"] == "once by REST"
    assert written == ["once", "once by REST"]
