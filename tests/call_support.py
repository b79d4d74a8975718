"""Helpers shared by the call test files: a server with a short ring timeout, calls over REST and sockets.

Nothing here sleeps: every wait is on an answer, an ack or an event. `flush` is a round trip on one
socket's connection: once its ack is back, every event the server sent that socket before is recorded
(one connection delivers in order), so an absence can be asserted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from server.config import Config
from tests.chat_support import ISO
from tests.conftest import Account, Api, Server, Socket, start_server

RING_TIMEOUT = 0.5
CALL_EVENTS = ("incoming_call", "call_status_update", "webrtc_offer", "webrtc_answer", "webrtc_ice_candidate")
SIGNALS = ("webrtc_offer", "webrtc_answer", "webrtc_ice_candidate")
CALL_KEYS = {
    "id",
    "type",
    "chatId",
    "initiatorId",
    "status",
    "participants",
    "duration",
    "createdAt",
    "startedAt",
    "endedAt",
}
PARTICIPANT_KEYS = {"id", "username", "avatar", "status", "reason", "joinedAt", "leftAt"}
ENDED = ("completed", "rejected", "missed", "cancelled")


async def fast_server(config: Config) -> Server:
    """The app with a short ring timeout and presence grace period, so timeouts come within a test."""
    return await start_server(config.replace(calls={"ring_timeout": RING_TIMEOUT}, presence={"grace_period": 0.2}))


async def online(sockets: Callable[..., Any], user: Account, namespace: str = "/") -> Socket:
    """A live socket of `user` recording call events, once authenticated (the user counts as online by then)."""
    socket = await sockets(token=user.token, namespace=namespace, events=(*CALL_EVENTS, "new_message"))
    await socket.seen.wait_for("authenticated")
    return socket


async def rest_start(api: Api, caller: Account, *invitees: Account, call_type: str = "audio", **extra: Any) -> dict:
    """`POST /calls` by `caller` to `invitees` (`extra` goes into the body); asserts the 201 and answers the Call."""
    body = {"type": call_type, "participants": [user.id for user in invitees], **extra}
    status, answer = await api.post("/calls", token=caller.token, json=body)
    assert status == 201, answer
    assert answer["success"] is True, answer
    assert_call_shape(answer["data"])
    return answer["data"]


async def rest_act(api: Api, user: Account, call_id: str, action: str) -> dict:
    """`POST /calls/:id/<action>`; asserts the 200 and answers the Call."""
    status, answer = await api.post(f"/calls/{call_id}/{action}", token=user.token)
    assert status == 200, answer
    assert answer["success"] is True, answer
    assert_call_shape(answer["data"])
    return answer["data"]


async def rest_get(api: Api, user: Account, call_id: str) -> dict:
    status, answer = await api.get(f"/calls/{call_id}", token=user.token)
    assert status == 200, answer
    return answer["data"]


async def rest_history(api: Api, user: Account, **params: Any) -> dict:
    """`GET /calls` with `params`; asserts the 200 and answers `{calls, pagination}`."""
    status, answer = await api.get("/calls", token=user.token, params=params)
    assert status == 200, answer
    return answer["data"]


async def sio_start(socket: Socket, *invitees: Account, call_type: str = "audio", **extra: Any) -> dict:
    """`start_call` over a socket; asserts the success ack and answers the Call."""
    answer = await socket.call("start_call", {"type": call_type, "participants": [u.id for u in invitees], **extra})
    assert answer["success"] is True, answer
    assert set(answer) == {"success", "data"}, answer
    assert_call_shape(answer["data"])
    return answer["data"]


async def sio_act(socket: Socket, event: str, call_id: str) -> dict:
    """`answer_call` / `reject_call` / `end_call`; asserts the success ack and answers the Call."""
    answer = await socket.call(event, {"callId": call_id})
    assert answer["success"] is True, answer
    assert_call_shape(answer["data"])
    return answer["data"]


def assert_call_shape(call: dict) -> None:
    assert set(call) == CALL_KEYS, call
    assert re.fullmatch(r"[0-9a-f]{24}", call["id"]), call
    assert call["type"] in ("audio", "video"), call
    assert ISO.match(call["createdAt"]), call
    for participant in call["participants"]:
        assert set(participant) == PARTICIPANT_KEYS, participant
        for key in ("joinedAt", "leftAt"):
            assert participant[key] is None or ISO.match(participant[key]), participant
    if call["status"] in ENDED:
        assert ISO.match(call["endedAt"]), call
    else:
        assert call["endedAt"] is None and call["duration"] is None, call


def statuses(call: dict) -> dict[str, str]:
    """Participant id -> participant status."""
    return {p["id"]: p["status"] for p in call["participants"]}


def member(call: dict, user: Account) -> dict:
    """The participant entry of `user` in `call`."""
    return next(p for p in call["participants"] if p["id"] == user.id)


async def wait_update(socket: Socket, call_id: str, test: Callable[[dict], bool]) -> dict:
    """The first `call_status_update` of `call_id` that passes `test`, waiting for it as long as it takes."""
    while True:
        updates = socket.seen.of("call_status_update")
        match = next((u for u in updates if u["id"] == call_id and test(u)), None)
        if match is not None:
            return match
        await socket.seen.wait_for("call_status_update", len(updates) + 1)


async def wait_status(socket: Socket, call_id: str, status: str) -> dict:
    """The first `call_status_update` of `call_id` with that call status that `socket` gets."""
    return await wait_update(socket, call_id, lambda call: call["status"] == status)


def updates_of(socket: Socket, call_id: str) -> list[str]:
    """The call statuses of every `call_status_update` of `call_id` the socket got, in order."""
    return [u["status"] for u in socket.seen.of("call_status_update") if u["id"] == call_id]


async def flush(socket: Socket) -> None:
    """A round trip on the socket's connection: whatever the server sent it before is recorded now."""
    answer = await socket.call("flush_marker", {})
    assert answer["success"] is False and answer["error"]["code"] == "VAL_001", answer
