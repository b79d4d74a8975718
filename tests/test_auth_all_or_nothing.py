"""Socket authentication is all or nothing: a step that fails midway leaves no half-authenticated socket.

Presence is counted in Redis with several processes; Redis failing at that moment once left a
socket holding its identity and its rooms without ever hearing `authenticated`: a handshake-token
client waited for nothing, and an `authenticate` retry answered "already authenticated". Here
presence fails as a lost Redis makes it fail, and each way of authenticating is tried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from server.keys import SERVICES, SIO
from tests.chat_support import group_chat
from tests.conftest import Api, Server


@pytest.fixture
def failing_presence(server: Server, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """`failing(True)`: presence raises what redis-py raises when Redis is gone; `failing(False)`: it works."""
    presence = server.app[SERVICES].presence
    real = presence.socket_opened
    state = {"failing": False}

    async def socket_opened(user_id: str, socket_id: str) -> None:
        if state["failing"]:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        await real(user_id, socket_id)

    monkeypatch.setattr(presence, "socket_opened", socket_opened)
    return lambda failing: state.update(failing=failing)


def _rooms(server: Server, namespace: str = "/") -> dict[str, set[str]]:
    """Every connected socket's rooms (its own sid room left out), as the server holds them."""
    manager = server.app[SIO].manager
    out: dict[str, set[str]] = {}
    for sid, _ in manager.get_participants(namespace, None):
        out[sid] = {room for room in manager.get_rooms(sid, namespace) if room != sid}
    return out


async def test_a_handshake_token_fails_whole_and_a_new_connection_succeeds(
    server: Server, api: Api, make_user: Any, sockets: Any, failing_presence: Callable[[bool], None]
) -> None:
    alice, bob = await make_user(), await make_user()
    await group_chat(api, alice, bob)
    failing_presence(True)
    socket = await sockets(token=alice.token)
    (refusal,) = await socket.seen.wait_for("unauthorized")
    assert refusal["code"] == "SYS_001", refusal  # told, and why: not left waiting for its deadline
    await socket.seen.wait_for("disconnect")
    assert socket.seen.of("authenticated") == []
    assert all(not rooms for rooms in _rooms(server).values())  # nothing joined is left behind

    failing_presence(False)
    again = await sockets(token=alice.token)
    (hello,) = await again.seen.wait_for("authenticated")
    assert hello["user"]["id"] == alice.id and hello["user"]["presence"] == "online"
    (rooms,) = _rooms(server).values()
    assert {room.split(":")[0] for room in rooms} == {"user", "login", "chat"}


async def test_an_authenticate_event_that_fails_can_be_retried_on_the_same_socket(
    server: Server, api: Api, make_user: Any, sockets: Any, failing_presence: Callable[[bool], None]
) -> None:
    alice, bob = await make_user(), await make_user()
    await group_chat(api, alice, bob)
    socket = await sockets()  # no token yet: it authenticates with the event
    failing_presence(True)
    answer = await socket.call("authenticate", {"token": alice.token})
    assert answer["success"] is False and answer["error"]["code"] == "SYS_001", answer
    assert socket.client.connected and socket.seen.of("authenticated") == []
    assert all(not rooms for rooms in _rooms(server).values())  # connected, in no room at all
    refused = await socket.call("sync", {"after": "1970-01-01T00:00:00.000Z"})
    assert refused["error"]["code"] == "AUTH_001", refused  # still unauthenticated, not half

    failing_presence(False)
    answer = await socket.call("authenticate", {"token": alice.token})
    assert answer["success"] is True, answer  # not "already authenticated"
    assert answer["data"]["user"]["presence"] == "online"
    (rooms,) = _rooms(server).values()
    assert {room.split(":")[0] for room in rooms} == {"user", "login", "chat"}
