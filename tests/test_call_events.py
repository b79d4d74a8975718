"""Call events over Socket.IO: start/answer/reject/end, who hears what, and the WebRTC signalling relay.

The server runs with a 0.5 s ring timeout. Every wait is on an ack or an event; an absence is asserted
after `flush` (a round trip on that socket's connection, which delivers in order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from server.config import Config
from tests.call_support import (
    CALL_EVENTS,
    SIGNALS,
    fast_server,
    flush,
    online,
    rest_act,
    rest_get,
    rest_start,
    sio_act,
    sio_start,
    statuses,
    updates_of,
    wait_status,
)
from tests.chat_support import MISSING
from tests.conftest import Account, Api, Server, Socket

Users = Callable[..., Any]


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    srv = await fast_server(config)
    yield srv
    await srv.runner.cleanup()


async def silent(*sockets: Socket, events: tuple[str, ...] = CALL_EVENTS) -> None:
    """None of `events` reached any of `sockets` (each flushed first)."""
    for socket in sockets:
        await flush(socket)
        heard = {event: socket.seen.of(event) for event in events if socket.seen.of(event)}
        assert heard == {}, heard


def refused(answer: Any, code: str) -> None:
    assert answer["success"] is False, answer
    assert set(answer) == {"success", "error"}, answer
    assert answer["error"]["code"] == code and answer["error"]["message"], answer


# starting, answering, ending ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["/", "/calls"])
async def test_start_call_acks_and_rings_every_device_of_the_invitees_only(
    make_user: Users, sockets: Users, namespace: str
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    caller = await online(sockets, alice, namespace)
    caller_other = await online(sockets, alice, "/calls" if namespace == "/" else "/")
    bob_root, bob_calls = await online(sockets, bob, "/"), await online(sockets, bob, "/calls")
    bob_messages = await online(sockets, bob, "/messages")
    carol_root, carol_calls = await online(sockets, carol, "/"), await online(sockets, carol, "/calls")

    answer = await caller.call("start_call", {"type": "video", "participants": [bob.id]})

    assert answer["success"] is True and set(answer) == {"success", "data"}, answer
    call = answer["data"]
    assert call["status"] == "ringing" and call["type"] == "video" and call["initiatorId"] == alice.id
    assert statuses(call) == {alice.id: "answered", bob.id: "invited"}
    for device in (bob_root, bob_calls):
        assert await device.seen.wait_for("incoming_call") == [call]
        assert await device.seen.wait_for("call_status_update") == [call]
    for device in (caller, caller_other):  # the caller's devices see the call, but are not rung
        assert await device.seen.wait_for("call_status_update") == [call]
        await silent(device, events=("incoming_call",))
    await silent(bob_messages, carol_root, carol_calls)


async def test_call_status_update_goes_to_every_participant_on_every_change(make_user: Users, sockets: Users) -> None:
    alice, bob, carol, dave = await make_user(), await make_user(), await make_user(), await make_user()
    alice_socket = await online(sockets, alice, "/calls")
    bob_socket, carol_socket = await online(sockets, bob), await online(sockets, carol, "/calls")
    dave_socket = await online(sockets, dave)

    acks = [await sio_start(alice_socket, bob, carol)]
    call_id = acks[0]["id"]
    acks.append(await sio_act(bob_socket, "answer_call", call_id))
    acks.append(await sio_act(carol_socket, "reject_call", call_id))
    acks.append(await sio_act(bob_socket, "end_call", call_id))

    assert [a["status"] for a in acks] == ["ringing", "ongoing", "ongoing", "completed"], acks
    assert statuses(acks[2]) == {alice.id: "answered", bob.id: "answered", carol.id: "rejected"}
    assert statuses(acks[3]) == {alice.id: "left", bob.id: "left", carol.id: "rejected"}
    for socket in (alice_socket, bob_socket, carol_socket):
        assert await socket.seen.wait_for("call_status_update", 4) == acks
    await silent(dave_socket)


async def test_call_events_refuse_what_the_state_machine_does_not_allow(
    api: Api, make_user: Users, sockets: Users
) -> None:
    alice, bob, carol, dave = await make_user(), await make_user(), await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice), await online(sockets, bob, "/calls")
    carol_socket = await online(sockets, carol)

    refused(await carol_socket.call("start_call", {"type": "audio", "participants": [dave.id]}), "CALL_002")
    call = await sio_start(alice_socket, bob)
    busy = await carol_socket.call("start_call", {"type": "audio", "participants": [bob.id]})
    refused(busy, "CALL_001")
    assert busy["error"]["details"] == {"busy": [bob.id]}, busy
    refused(await bob_socket.call("start_call", {"type": "audio", "participants": [carol.id]}), "CALL_001")
    refused(await carol_socket.call("answer_call", {"callId": call["id"]}), "RES_002")  # not hers
    refused(await alice_socket.call("answer_call", {"callId": call["id"]}), "CALL_001")  # already in
    refused(await bob_socket.call("answer_call", {"callId": MISSING}), "RES_002")
    await sio_act(bob_socket, "answer_call", call["id"])
    refused(await bob_socket.call("answer_call", {"callId": call["id"]}), "CALL_001")
    refused(await bob_socket.call("reject_call", {"callId": call["id"]}), "CALL_001")
    ended = await sio_act(alice_socket, "end_call", call["id"])
    assert ended["status"] == "completed"
    for event in ("answer_call", "reject_call", "end_call"):
        refused(await bob_socket.call(event, {"callId": call["id"]}), "RES_002")
    # the REST view agrees, and the refusals changed nothing
    assert updates_of(alice_socket, call["id"]) == ["ringing", "ongoing", "completed"]
    assert await rest_get(api, bob, call["id"]) == ended


@pytest.mark.parametrize(
    "payload",
    [None, "call", {}, {"callId": "nope"}, {"type": "audio"}, {"type": "fax", "participants": [MISSING]}],
)
async def test_bad_call_payloads_are_refused_and_the_socket_lives_on(
    make_user: Users, sockets: Users, payload: Any
) -> None:
    alice, bob = await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice), await online(sockets, bob)
    event = "start_call" if isinstance(payload, dict) and "callId" not in payload else "answer_call"

    refused(await alice_socket.call(event, payload), "VAL_001")
    await alice_socket.emit(event, payload)  # no ack asked: the refusal comes as `error`
    [error] = await alice_socket.seen.wait_for("error")
    assert error["code"] == "VAL_001" and error["event"] == event, error

    call = await sio_start(alice_socket, bob)
    assert await bob_socket.seen.wait_for("incoming_call") == [call]


async def test_no_update_goes_out_when_the_ring_timeout_changes_nothing(make_user: Users, sockets: Users) -> None:
    alice, bob, carol, dave = await make_user(), await make_user(), await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice), await online(sockets, bob)
    carol_socket = await online(sockets, carol)
    await online(sockets, dave)
    call = await sio_start(alice_socket, bob)
    await sio_act(bob_socket, "answer_call", call["id"])
    # a call started later rings out later: once it has, the first call's ring timeout has passed too
    later = await sio_start(carol_socket, dave)
    await wait_status(carol_socket, later["id"], "missed")

    await flush(alice_socket)
    assert updates_of(alice_socket, call["id"]) == ["ringing", "ongoing"]


async def test_a_participants_last_socket_closing_ends_their_part(make_user: Users, sockets: Users) -> None:
    alice, bob = await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice, "/calls"), await online(sockets, bob)
    call = await sio_start(alice_socket, bob)
    await sio_act(bob_socket, "answer_call", call["id"])

    await bob_socket.client.disconnect()

    done = await wait_status(alice_socket, call["id"], "completed")
    assert statuses(done) == {alice.id: "left", bob.id: "left"}, done
    refused(await alice_socket.call("end_call", {"callId": call["id"]}), "RES_002")


# signalling ---------------------------------------------------------------------------------------------------------

SIGNAL_BODIES = {
    "webrtc_offer": {"sdp": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}},
    "webrtc_answer": {"sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n"},
    "webrtc_ice_candidate": {"candidate": {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0"}},
}


async def group_call(api: Api, sockets: Users, caller: Account, *invitees: Account) -> tuple[dict, dict[str, Socket]]:
    """A call of `caller` ringing `invitees`, each with a live `/` socket: the call and each user's socket."""
    by_user = {user.id: await online(sockets, user) for user in (caller, *invitees)}
    return await rest_start(api, caller, *invitees), by_user


@pytest.mark.parametrize("event", SIGNALS)
async def test_signals_reach_exactly_the_addressee_with_from_added(
    api: Api, make_user: Users, sockets: Users, event: str
) -> None:
    alice, bob, carol, dave = await make_user(), await make_user(), await make_user(), await make_user()
    bob_calls = await online(sockets, bob, "/calls")  # Bob's second device
    alice_calls = await online(sockets, alice, "/calls")
    dave_socket = await online(sockets, dave)
    call, by_user = await group_call(api, sockets, alice, bob, carol)
    await rest_act(api, bob, call["id"], "answer")  # Carol is still ringing: she may be signalled too
    body = SIGNAL_BODIES[event]

    answer = await by_user[alice.id].call(event, {"callId": call["id"], "to": bob.id, **body, "extra": 1})

    assert answer == {"success": True, "data": {"callId": call["id"], "to": bob.id}}, answer
    relayed = {"callId": call["id"], "to": bob.id, **body, "from": alice.id}
    for device in (by_user[bob.id], bob_calls):
        assert await device.seen.wait_for(event) == [relayed]
    # the way back, and to a participant whose phone still rings
    back = await bob_calls.call(event, {"callId": call["id"], "to": alice.id, **body})
    assert back == {"success": True, "data": {"callId": call["id"], "to": alice.id}}, back
    to_carol = await by_user[bob.id].call(event, {"callId": call["id"], "to": carol.id, **body})
    assert to_carol["success"] is True, to_carol
    for device in (by_user[alice.id], alice_calls):
        assert await device.seen.wait_for(event) == [{**relayed, "to": alice.id, "from": bob.id}]
    assert await by_user[carol.id].seen.wait_for(event) == [{**relayed, "to": carol.id, "from": bob.id}]
    # nobody got more than that: one each, and nothing for the outsider
    for device in (by_user[alice.id], alice_calls, by_user[bob.id], bob_calls, by_user[carol.id]):
        await flush(device)
        assert len(device.seen.of(event)) == 1, device.seen.of(event)
        assert [e for e in SIGNALS if e != event and device.seen.of(e)] == []
    await silent(dave_socket)


async def test_signals_outside_a_live_call_are_refused_and_reach_nobody(
    api: Api, make_user: Users, sockets: Users
) -> None:
    alice, bob, carol, erin, dave = [await make_user() for _ in range(5)]
    call, by_user = await group_call(api, sockets, alice, bob, carol, erin)
    dave_socket = await online(sockets, dave)
    alice_socket = by_user[alice.id]
    await rest_act(api, bob, call["id"], "answer")
    await rest_act(api, carol, call["id"], "reject")
    await rest_act(api, erin, call["id"], "answer")
    assert (await rest_act(api, erin, call["id"], "end"))["status"] == "ongoing"  # Alice and Bob talk on
    offer = SIGNAL_BODIES["webrtc_offer"]

    cases = [
        (alice_socket, MISSING, bob.id, "RES_002"),  # unknown call
        (dave_socket, call["id"], alice.id, "RES_002"),  # the sender is not in the call
        (alice_socket, call["id"], dave.id, "CALL_001"),  # `to` is not in the call
        (alice_socket, call["id"], MISSING, "CALL_001"),  # `to` is nobody at all
        (alice_socket, call["id"], alice.id, "CALL_001"),  # `to` is the sender
        (alice_socket, call["id"], carol.id, "CALL_001"),  # `to` rejected the call
        (alice_socket, call["id"], erin.id, "CALL_001"),  # `to` left the call
        (by_user[carol.id], call["id"], alice.id, "CALL_001"),  # from one who rejected
        (by_user[erin.id], call["id"], bob.id, "CALL_001"),  # from one who left
    ]
    for sender, call_id, to, code in cases:
        for event in SIGNALS:
            body = offer if event != "webrtc_ice_candidate" else SIGNAL_BODIES[event]
            refused(await sender.call(event, {"callId": call_id, "to": to, **body}), code)

    ended = await rest_act(api, alice, call["id"], "end")
    assert ended["status"] == "completed"
    refused(await by_user[bob.id].call("webrtc_offer", {"callId": call["id"], "to": alice.id, **offer}), "RES_002")

    await silent(*by_user.values(), dave_socket, events=SIGNALS)


DROP = object()


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("webrtc_offer", None, "_schema"),
        ("webrtc_offer", ["not", "an", "object"], "_schema"),
        ("webrtc_offer", {"to": DROP, "sdp": "v=0"}, "to"),
        ("webrtc_ice_candidate", {"callId": DROP, "candidate": "c"}, "callId"),
        ("webrtc_offer", {"to": None, "sdp": "v=0"}, "to"),
        ("webrtc_answer", {"sdp": "x" * 100_000}, "sdp"),
        ("webrtc_answer", {"sdp": {"sdp": "x" * 100_000}}, "sdp"),
        ("webrtc_offer", {"sdp": 42}, "sdp"),
        ("webrtc_offer", {"sdp": None}, "sdp"),
        ("webrtc_offer", {}, "sdp"),
        ("webrtc_ice_candidate", {"candidate": 1.5}, "candidate"),
        ("webrtc_ice_candidate", {"sdp": "v=0"}, "candidate"),
        ("webrtc_offer", {"callId": "nope", "sdp": "v=0"}, "callId"),
    ],
)
async def test_bad_signals_are_refused_and_the_connection_still_works(
    api: Api, make_user: Users, sockets: Users, event: str, payload: Any, field: str
) -> None:
    alice, bob = await make_user(), await make_user()
    call, by_user = await group_call(api, sockets, alice, bob)
    await rest_act(api, bob, call["id"], "answer")
    if isinstance(payload, dict):  # a well-addressed signal but for what the case changes (DROP: leaves out)
        payload = {k: v for k, v in {"callId": call["id"], "to": bob.id, **payload}.items() if v is not DROP}

    answer = await by_user[alice.id].call(event, payload)

    refused(answer, "VAL_001")
    assert field in answer["error"]["details"], answer
    # the same socket signals on, and Bob's first signal is the good one
    good = await by_user[alice.id].call("webrtc_offer", {"callId": call["id"], "to": bob.id, "sdp": "marker"})
    assert good["success"] is True, good
    [relayed] = await by_user[bob.id].seen.wait_for("webrtc_offer")
    assert relayed["sdp"] == "marker", relayed
    await silent(by_user[bob.id], events=("webrtc_answer", "webrtc_ice_candidate"))
