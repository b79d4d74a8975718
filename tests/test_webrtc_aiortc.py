"""A real WebRTC connection between two aiortc peers, signalled only through the server.

Two users in a private chat each hold an authenticated `/calls` socket. A starts
a call, B answers it; then the offer, the answer and every ICE candidate travel
`webrtc_offer` / `webrtc_answer` / `webrtc_ice_candidate` through the relay, the
way a browser trickles them: aiortc puts the gathered candidates into the SDP and
has no trickle events, so they are cut out of the SDP and sent one message each,
followed by an empty candidate for end-of-candidates, as a browser does. Once the
data channel is open a message goes A -> B and a reply B -> A; A then hangs up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from tests.chat_support import private_chat
from tests.conftest import Account, Recorder, Socket

WAIT = 15.0  # seconds: the bound on every wait
CALL_EVENTS = ("incoming_call", "call_status_update", "webrtc_offer", "webrtc_answer", "webrtc_ice_candidate")
PING = "ping from A: héllo ☎"
PONG = "pong from B: got it"


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE host candidates on 127.0.0.1 only.

    aioice leaves loopback out of its host candidates, so on a machine with only
    `lo` neither peer would gather any; with this the test needs no network
    beyond loopback, and no STUN or TURN.
    """
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def split_sdp(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """The SDP without its candidate lines, and those candidates as a browser's `RTCIceCandidate.toJSON()`."""
    mids: list[str | None] = []  # the a=mid of each m-section
    for line in sdp.splitlines():
        if line.startswith("m="):
            mids.append(None)
        elif line.startswith("a=mid:") and mids:
            mids[-1] = line.removeprefix("a=mid:")
    kept: list[str] = []
    candidates: list[dict[str, Any]] = []
    index = -1  # of the current m-section
    for line in sdp.splitlines():
        index += line.startswith("m=")
        if line.startswith("a=candidate:"):
            candidates.append({"candidate": line.removeprefix("a="), "sdpMid": mids[index], "sdpMLineIndex": index})
        elif line != "a=end-of-candidates":  # left in, the peer would ignore the trickled candidates
            kept.append(line)
    return "\r\n".join(kept) + "\r\n", candidates


def to_aiortc(candidate: dict[str, Any]) -> RTCIceCandidate | None:
    """A relayed candidate as aiortc takes it; the empty one (end-of-candidates) is None."""
    if not candidate["candidate"]:
        return None
    ice = candidate_from_sdp(candidate["candidate"].removeprefix("candidate:"))
    ice.sdpMid = candidate["sdpMid"]
    ice.sdpMLineIndex = candidate["sdpMLineIndex"]
    return ice


async def wait_until(seen: Recorder, event: str, found: Callable[[list[Any]], bool]) -> list[Any]:
    """Every `event` received so far, once `found(events)` holds (bounded by WAIT)."""

    async def scan() -> list[Any]:
        count = 1
        while True:
            events = await seen.wait_for(event, count, timeout=WAIT)
            if found(events):
                return events
            count = len(events) + 1

    return await asyncio.wait_for(scan(), WAIT)


async def signal(socket: Socket, event: str, data: dict[str, Any]) -> None:
    answer = await socket.call(event, data, timeout=WAIT)
    assert answer == {"success": True, "data": {"callId": data["callId"], "to": data["to"]}}, answer


async def send_description(
    socket: Socket, pc: RTCPeerConnection, event: str, call_id: str, to: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Relay `pc`'s local description without candidates, then each candidate, then end-of-candidates."""
    local = pc.localDescription
    sdp, candidates = split_sdp(local.sdp)
    assert candidates, f"{event}: no ICE candidate was gathered"
    description = {"type": local.type, "sdp": sdp}
    await signal(socket, event, {"callId": call_id, "to": to, "sdp": description})
    end = {"candidate": "", "sdpMid": candidates[0]["sdpMid"], "sdpMLineIndex": candidates[0]["sdpMLineIndex"]}
    for candidate in [*candidates, end]:
        await signal(socket, "webrtc_ice_candidate", {"callId": call_id, "to": to, "candidate": candidate})
    return description, candidates


async def receive_description(
    seen: Recorder, pc: RTCPeerConnection, event: str, call_id: str, sender: Account, me: Account
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Apply the relayed description, then the relayed candidates up to end-of-candidates."""
    (relayed,) = await wait_until(seen, event, lambda events: len(events) >= 1)
    assert relayed["from"] == sender.id and relayed["to"] == me.id and relayed["callId"] == call_id, relayed
    await pc.setRemoteDescription(RTCSessionDescription(sdp=relayed["sdp"]["sdp"], type=relayed["sdp"]["type"]))
    ices = await wait_until(
        seen, "webrtc_ice_candidate", lambda events: any(not e["candidate"]["candidate"] for e in events)
    )
    for ice in ices:
        assert ice["from"] == sender.id and ice["to"] == me.id and ice["callId"] == call_id, ice
        await pc.addIceCandidate(to_aiortc(ice["candidate"]))
    return relayed["sdp"], [ice["candidate"] for ice in ices if ice["candidate"]["candidate"]]


async def status_reached(seen: Recorder, call_id: str, status: str) -> dict[str, Any]:
    updates = await wait_until(
        seen, "call_status_update", lambda events: any(e["id"] == call_id and e["status"] == status for e in events)
    )
    return next(e for e in updates if e["id"] == call_id and e["status"] == status)


def inbox(channel: RTCDataChannel) -> asyncio.Queue[Any]:
    messages: asyncio.Queue[Any] = asyncio.Queue()
    channel.on("message", messages.put_nowait)
    return messages


async def test_aiortc_peers_connect_through_the_relay(api, make_user, sockets):
    alice, bob = await make_user(), await make_user()
    await private_chat(api, alice, bob)
    sock_a = await sockets(token=alice.token, namespace="/calls", events=CALL_EVENTS)
    sock_b = await sockets(token=bob.token, namespace="/calls", events=CALL_EVENTS)
    for sock in (sock_a, sock_b):
        await sock.seen.wait_for("authenticated", timeout=WAIT)

    started = await sock_a.call("start_call", {"type": "audio", "participants": [bob.id]}, timeout=WAIT)
    assert started["success"], started
    call_id = started["data"]["id"]
    (incoming,) = await sock_b.seen.wait_for("incoming_call", timeout=WAIT)
    assert incoming["id"] == call_id and incoming["initiatorId"] == alice.id
    answered = await sock_b.call("answer_call", {"callId": call_id}, timeout=WAIT)
    assert answered["success"] and answered["data"]["status"] == "ongoing", answered

    config = RTCConfiguration(iceServers=[])
    pc_a, pc_b = RTCPeerConnection(config), RTCPeerConnection(config)
    try:
        channel_a = pc_a.createDataChannel("chat")
        opened_a: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        channel_a.on("open", lambda: opened_a.done() or opened_a.set_result(None))
        channel_b_ready: asyncio.Future[RTCDataChannel] = asyncio.get_running_loop().create_future()
        pc_b.on("datachannel", lambda channel: channel_b_ready.done() or channel_b_ready.set_result(channel))
        inbox_a = inbox(channel_a)

        # A: the offer; setLocalDescription returns once ICE gathering is complete
        await asyncio.wait_for(pc_a.setLocalDescription(await pc_a.createOffer()), WAIT)
        assert pc_a.iceGatheringState == "complete"
        offer_sent, candidates_a = await send_description(sock_a, pc_a, "webrtc_offer", call_id, bob.id)

        # B: the relayed offer and candidates, then the answer back the same way
        offer_got, candidates_at_b = await asyncio.wait_for(
            receive_description(sock_b.seen, pc_b, "webrtc_offer", call_id, alice, bob), WAIT
        )
        await asyncio.wait_for(pc_b.setLocalDescription(await pc_b.createAnswer()), WAIT)
        answer_sent, candidates_b = await send_description(sock_b, pc_b, "webrtc_answer", call_id, alice.id)

        # A: the relayed answer and candidates
        answer_got, candidates_at_a = await asyncio.wait_for(
            receive_description(sock_a.seen, pc_a, "webrtc_answer", call_id, bob, alice), WAIT
        )

        # the relay passes descriptions and candidates through untouched
        assert offer_got == offer_sent and answer_got == answer_sent
        assert "a=candidate" not in offer_got["sdp"] and "a=candidate" not in answer_got["sdp"]
        assert candidates_at_b == candidates_a and len(candidates_a) >= 1
        assert candidates_at_a == candidates_b and len(candidates_b) >= 1

        # the data channel opens on both sides; a message makes the round trip
        await asyncio.wait_for(opened_a, WAIT)
        channel_b = await asyncio.wait_for(channel_b_ready, WAIT)
        inbox_b = inbox(channel_b)
        assert channel_a.readyState == "open" and channel_b.readyState == "open"
        assert channel_b.label == "chat"
        assert pc_a.connectionState == "connected" and pc_b.connectionState == "connected"

        channel_a.send(PING)
        got_b = await asyncio.wait_for(inbox_b.get(), WAIT)
        channel_b.send(PONG)
        got_a = await asyncio.wait_for(inbox_a.get(), WAIT)
        assert got_b == PING and got_a == PONG

        print(
            f"\nrelayed: offer A->B, {len(candidates_a)} ICE candidate(s) A->B ({_addresses(candidates_a)}); "
            f"answer B->A, {len(candidates_b)} ICE candidate(s) B->A ({_addresses(candidates_b)}); "
            f"data channel {channel_a.label!r} open; A->B {got_b!r}, B->A {got_a!r}"
        )
    finally:
        await pc_a.close()
        await pc_b.close()

    ended = await sock_a.call("end_call", {"callId": call_id}, timeout=WAIT)
    assert ended["success"] and ended["data"]["status"] == "completed", ended
    for sock in (sock_a, sock_b):
        final = await status_reached(sock.seen, call_id, "completed")
        assert {p["id"]: p["status"] for p in final["participants"]} == {alice.id: "left", bob.id: "left"}
    # every relayed event came from the other user
    for sock, other in ((sock_a, bob), (sock_b, alice)):
        relayed = [e for name in ("webrtc_offer", "webrtc_answer", "webrtc_ice_candidate") for e in sock.seen.of(name)]
        assert relayed and all(e["from"] == other.id for e in relayed)
    print(f"call {call_id}: completed for both")


def _addresses(candidates: list[dict[str, Any]]) -> str:
    """`udp 127.0.0.1:51234 host, ...` from `candidate:<foundation> <component> udp <priority> <ip> <port> typ host`."""
    parts = [c["candidate"].split() for c in candidates]
    return ", ".join(f"{p[2]} {p[4]}:{p[5]} {p[7]}" for p in parts)
