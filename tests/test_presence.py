"""Presence with real clients: online from the first socket, offline a grace period after the last.

`user_status_changed {userId, status, lastSeen}` goes to the users who share a
chat with the subject and whom the subject has not blocked, on `/` and `/status`.
`invisible` looks `offline` to everyone else. Absence of an event is proven with a
later marker: an event about another user that the same socket must receive
after the one that must not come (events on one connection arrive in order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio

from models.clock import now_iso
from server.config import Config
from server.keys import STORE
from tests.chat_support import ISO, connect, group_chat, private_chat, rest_send
from tests.conftest import Account, Api, Recorder, Server, Socket, recorder_for, start_server

SHORT_GRACE = 0.3
LONG_GRACE = 30.0
SEEN_AT = "2024-05-01T12:00:00.000Z"  # a last seen from before, so that hiding it shows
# for the tests that must see a user still online after their last socket closed
long_grace = pytest.mark.parametrize("server", [LONG_GRACE], indirect=True)


@pytest.fixture
async def server(config: Config, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """The app with a short presence grace period (or `request.param` seconds), so going offline is quick."""
    grace = getattr(request, "param", SHORT_GRACE)
    srv = await start_server(config.replace(presence={"grace_period": grace}))
    yield srv
    await srv.runner.cleanup()


def changes(sock: Socket | Recorder) -> list[tuple[str, str]]:
    """The `user_status_changed` events received so far, as `(userId, status)`."""
    seen = sock.seen if isinstance(sock, Socket) else sock
    return [(e["userId"], e["status"]) for e in seen.of("user_status_changed")]


async def changed(sock: Socket | Recorder, count: int) -> list[tuple[str, str]]:
    """Wait until `count` status changes arrived; all of them, as `(userId, status)`."""
    seen = sock.seen if isinstance(sock, Socket) else sock
    await seen.wait_for("user_status_changed", count)
    return changes(seen)


def last_change(sock: Socket | Recorder) -> dict[str, Any]:
    seen = sock.seen if isinstance(sock, Socket) else sock
    return seen.of("user_status_changed")[-1]


async def profile(api: Api, viewer: Account, user: Account) -> dict[str, Any]:
    status, body = await api.get(f"/users/{user.id}", token=viewer.token)
    assert status == 200, body
    return body["data"]


async def own_profile(api: Api, user: Account) -> dict[str, Any]:
    status, body = await api.get("/auth/me", token=user.token)
    assert status == 200, body
    return body["data"]


async def set_status(sock: Socket, setting: str) -> dict[str, Any]:
    """`update_status` over the socket; asserts the ack and answers its data."""
    answer = await sock.call("update_status", {"status": setting})
    assert answer["success"] is True, answer
    assert answer["data"]["status"] == setting and ISO.match(answer["data"]["updatedAt"]), answer
    return answer["data"]


async def put_status(api: Api, user: Account, setting: str) -> None:
    status, body = await api.put("/status", token=user.token, json={"status": setting})
    assert status == 200 and body["data"]["status"] == setting, body


# coming online -------------------------------------------------------------------------------------------------------


async def test_first_socket_makes_the_user_online_for_chat_partners_once(api, make_user, sockets):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    chat_id = await private_chat(api, alice, bob)
    await group_chat(api, carol, bob)  # carol is the marker: bob shares a chat with her
    watchers = [await connect(sockets, bob, "/"), await connect(sockets, bob, "/status")]
    bob_messages = await connect(sockets, bob, "/messages")

    await connect(sockets, alice)
    for watcher in watchers:
        assert await changed(watcher, 1) == [(alice.id, "online")]
        event = last_change(watcher)
        assert set(event) == {"userId", "status", "lastSeen"}, event
        assert event["lastSeen"] is None or ISO.match(event["lastSeen"]), event
    assert (await profile(api, bob, alice))["presence"] == "online"

    # a second device of alice: she is online already, nobody is told again
    await connect(sockets, alice, "/status")
    await connect(sockets, carol)
    for watcher in watchers:
        assert await changed(watcher, 2) == [(alice.id, "online"), (carol.id, "online")]

    # `/messages` does not carry presence: a message sent after all that arrives there alone
    await rest_send(api, alice, chat_id, "marker")
    await bob_messages.seen.wait_for("new_message")
    assert changes(bob_messages) == []


# going offline -------------------------------------------------------------------------------------------------------


async def test_closing_one_device_keeps_the_user_online_and_the_last_one_ends_it_after_the_grace(
    api, make_user, sockets
):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await private_chat(api, bob, alice)
    await private_chat(api, bob, carol)
    bob_sock = await connect(sockets, bob)
    phone, laptop = await connect(sockets, alice), await connect(sockets, alice)
    carol_sock = await connect(sockets, carol)
    assert await changed(bob_sock, 2) == [(alice.id, "online"), (carol.id, "online")]
    before = (await profile(api, bob, alice))["lastSeen"]

    await phone.client.disconnect()
    # carol's going offline starts after alice's phone closed and ends a grace period later:
    # had the phone taken alice offline, bob would have heard that first
    await carol_sock.client.disconnect()
    assert await changed(bob_sock, 3) == [(alice.id, "online"), (carol.id, "online"), (carol.id, "offline")]
    seen = await profile(api, bob, alice)
    assert (seen["presence"], seen["lastSeen"]) == ("online", before)

    closed_at = now_iso()
    await laptop.client.disconnect()
    assert (await changed(bob_sock, 4))[3] == (alice.id, "offline")
    event = last_change(bob_sock)
    assert ISO.match(event["lastSeen"]) and event["lastSeen"] >= closed_at, event
    seen = await profile(api, bob, alice)
    assert (seen["presence"], seen["lastSeen"]) == ("offline", event["lastSeen"])
    # alice herself is offline too, with the same last seen
    me = await own_profile(api, alice)
    assert (me["presence"], me["lastSeen"]) == ("offline", event["lastSeen"])


@long_grace
async def test_reconnecting_within_the_grace_period_is_not_seen(api, make_user, sockets):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await group_chat(api, bob, alice, carol)
    bob_sock = await connect(sockets, bob)
    alice_sock = await connect(sockets, alice)
    carol_sock = await connect(sockets, carol)
    assert await changed(bob_sock, 2) == [(alice.id, "online"), (carol.id, "online")]

    await alice_sock.client.disconnect()
    assert (await profile(api, bob, alice))["presence"] == "online"  # her last socket closed, within the grace
    await connect(sockets, alice)  # back: no offline, and no second online either
    await set_status(carol_sock, "away")  # the marker
    assert await changed(bob_sock, 3) == [(alice.id, "online"), (carol.id, "online"), (carol.id, "away")]
    assert (await profile(api, bob, alice))["presence"] == "online"
    assert (await own_profile(api, alice))["presence"] == "online"


# chosen presence -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["/", "/status"])
async def test_update_status_and_put_status_tell_the_audience(api, server, make_user, sockets, namespace):
    alice, bob = await make_user(), await make_user()
    await server.app[STORE].update_user(alice.id, {"last_seen": SEEN_AT})
    await private_chat(api, alice, bob)
    watchers = [await connect(sockets, bob, "/"), await connect(sockets, bob, "/status")]
    alice_sock = await connect(sockets, alice, namespace)
    for watcher in watchers:
        await changed(watcher, 1)

    await set_status(alice_sock, "away")
    await put_status(api, alice, "busy")
    await set_status(alice_sock, "invisible")  # told as going offline, with no last seen
    await put_status(api, alice, "online")
    await set_status(alice_sock, "busy")
    expected = [
        ("online", SEEN_AT),
        ("away", SEEN_AT),
        ("busy", SEEN_AT),
        ("offline", None),
        ("online", SEEN_AT),
        ("busy", SEEN_AT),
    ]
    for watcher in watchers:
        await watcher.seen.wait_for("user_status_changed", len(expected))
        events = watcher.seen.of("user_status_changed")
        assert [(e["userId"], e["status"], e["lastSeen"]) for e in events] == [
            (alice.id, status, seen) for status, seen in expected
        ]
    seen = await profile(api, bob, alice)
    assert seen["presence"] == "busy"


async def test_invisible_looks_offline_wherever_others_look(api, server, make_user, sockets):
    alice, bob = await make_user(), await make_user()
    await server.app[STORE].update_user(alice.id, {"last_seen": SEEN_AT})
    chat_id = await private_chat(api, alice, bob)
    await connect(sockets, alice)

    async def as_seen(viewer: Account) -> list[tuple[str, str | None]]:
        """alice's presence (and last seen) in GET /users/:id, GET /users and GET /chats/:id."""
        seen = await profile(api, viewer, alice)
        status, body = await api.get("/users", token=viewer.token, params={"search": alice.username})
        assert status == 200, body
        (listed,) = body["data"]["users"]
        status, body = await api.get(f"/chats/{chat_id}", token=viewer.token)
        assert status == 200, body
        (member,) = [p for p in body["data"]["participants"] if p["id"] == alice.id]
        return [
            (seen["presence"], seen["lastSeen"]),
            (listed["presence"], listed["lastSeen"]),
            (member["presence"], ""),  # participants carry no last seen
        ]

    assert await as_seen(bob) == [("online", SEEN_AT), ("online", SEEN_AT), ("online", "")]
    await put_status(api, alice, "invisible")
    assert await as_seen(bob) == [("offline", None), ("offline", None), ("offline", "")]
    # alice herself sees her setting
    assert await as_seen(alice) == [("invisible", SEEN_AT), ("invisible", SEEN_AT), ("invisible", "")]
    assert (await own_profile(api, alice))["presence"] == "invisible"

    await put_status(api, alice, "away")
    assert await as_seen(bob) == [("away", SEEN_AT), ("away", SEEN_AT), ("away", "")]


async def test_an_invisible_user_coming_and_going_tells_nobody(api, make_user, sockets):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await group_chat(api, bob, alice, carol)
    await put_status(api, alice, "invisible")  # chosen while offline: nobody is told
    bob_sock = await connect(sockets, bob)

    alice_sock = await connect(sockets, alice)
    carol_sock = await connect(sockets, carol)
    assert await changed(bob_sock, 1) == [(carol.id, "online")]
    assert (await profile(api, bob, alice))["presence"] == "offline"
    assert (await own_profile(api, alice))["presence"] == "invisible"

    await alice_sock.client.disconnect()
    await carol_sock.client.disconnect()  # her grace period ends after alice's
    assert await changed(bob_sock, 2) == [(carol.id, "online"), (carol.id, "offline")]
    seen = await profile(api, bob, alice)
    assert (seen["presence"], seen["lastSeen"]) == ("offline", None)

    # back online while connected: told as online again
    alice_sock = await connect(sockets, alice)
    await set_status(alice_sock, "online")
    assert (await changed(bob_sock, 3))[2] == (alice.id, "online")


# who is told ---------------------------------------------------------------------------------------------------------


async def test_a_user_who_shares_no_chat_is_never_told(api, make_user, sockets):
    alice, bob, carol, dave = await make_user(), await make_user(), await make_user(), await make_user()
    await private_chat(api, alice, bob)
    await private_chat(api, carol, dave)  # dave shares a chat with carol only: she is his marker
    dave_sock = await connect(sockets, dave)
    bob_sock = await connect(sockets, bob)
    carol_sock = await connect(sockets, carol)
    assert await changed(dave_sock, 1) == [(carol.id, "online")]

    alice_sock = await connect(sockets, alice)
    await set_status(alice_sock, "busy")
    await alice_sock.client.disconnect()
    assert await changed(bob_sock, 3) == [(alice.id, "online"), (alice.id, "busy"), (alice.id, "offline")]

    await carol_sock.client.disconnect()
    assert await changed(dave_sock, 2) == [(carol.id, "online"), (carol.id, "offline")]
    # a stranger may still look alice up: she is offline now
    assert (await profile(api, dave, alice))["presence"] == "offline"


async def test_a_blocked_user_is_not_told_and_sees_the_blocker_offline(api, make_user, sockets):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    blocked_chat = await private_chat(api, alice, bob)
    await private_chat(api, alice, carol)
    await private_chat(api, carol, bob)  # carol is bob's marker
    status, body = await api.post(f"/users/{bob.id}/block", token=alice.token)
    assert status == 200, body
    bob_sock = await connect(sockets, bob)
    carol_sock = await connect(sockets, carol)
    assert await changed(bob_sock, 1) == [(carol.id, "online")]

    alice_sock = await connect(sockets, alice)
    assert await changed(carol_sock, 1) == [(alice.id, "online")]
    await set_status(carol_sock, "away")
    assert await changed(bob_sock, 2) == [(carol.id, "online"), (carol.id, "away")]
    seen = await profile(api, bob, alice)
    assert (seen["presence"], seen["lastSeen"]) == ("offline", None)
    assert (await profile(api, carol, alice))["presence"] == "online"
    status, body = await api.get(f"/chats/{blocked_chat}", token=bob.token)
    assert [p["presence"] for p in body["data"]["participants"] if p["id"] == alice.id] == ["offline"]

    await set_status(alice_sock, "busy")
    await alice_sock.client.disconnect()
    assert await changed(carol_sock, 3) == [(alice.id, "online"), (alice.id, "busy"), (alice.id, "offline")]
    await set_status(carol_sock, "online")
    assert await changed(bob_sock, 3) == [(carol.id, "online"), (carol.id, "away"), (carol.id, "online")]

    # blocking is one way: alice still hears of bob
    alice_sock = await connect(sockets, alice)
    bob_status = await connect(sockets, bob, "/status")
    await set_status(bob_status, "busy")
    assert (await changed(alice_sock, 1)) == [(bob.id, "busy")]


# namespaces ----------------------------------------------------------------------------------------------------------


async def test_one_connection_on_several_namespaces_is_one_user_online(api, server, make_user, sockets):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await group_chat(api, bob, alice, carol)
    namespaces = ["/", "/status", "/messages"]

    async def open_connection(user: Account) -> tuple[socketio.AsyncClient, dict[str, Recorder]]:
        """One Engine.IO connection of `user` on every namespace, each recording what it receives."""
        client = socketio.AsyncClient(reconnection=False)
        recorders = {ns: Recorder() for ns in namespaces}
        for ns, recorder in recorders.items():
            for name in ("authenticated", "user_status_changed"):
                client.on(name, recorder_for(recorder, name), namespace=ns)
        await client.connect(
            server.url, namespaces=namespaces, auth={"token": user.token}, transports=["websocket"], wait_timeout=5
        )
        opened.append(client)
        for recorder in recorders.values():
            await recorder.wait_for("authenticated")
        return client, recorders

    opened: list[socketio.AsyncClient] = []
    try:
        _, bob_seen = await open_connection(bob)
        alice_client, _ = await open_connection(alice)
        await connect(sockets, carol)  # the marker
        for ns in ("/", "/status"):
            assert await changed(bob_seen[ns], 2) == [(alice.id, "online"), (carol.id, "online")], ns
        assert changes(bob_seen["/messages"]) == []

        # a status set on one namespace of the connection reaches `/` and `/status` of the other, once each
        answer = await alice_client.call("update_status", {"status": "away"}, namespace="/status", timeout=5)
        assert answer["success"] is True and answer["data"]["status"] == "away", answer
        for ns in ("/", "/status"):
            assert (await changed(bob_seen[ns], 3))[2] == (alice.id, "away"), ns

        # closing the connection closes all its namespaces: one offline, a grace period later
        await alice_client.disconnect()
        for ns in ("/", "/status"):
            assert (await changed(bob_seen[ns], 4))[3] == (alice.id, "offline"), ns
        assert (await profile(api, bob, alice))["presence"] == "offline"
        await set_status(await connect(sockets, carol, "/status"), "busy")  # the marker: no second offline
        for ns in ("/", "/status"):
            assert (await changed(bob_seen[ns], 5))[3:] == [(alice.id, "offline"), (carol.id, "busy")], ns
        assert changes(bob_seen["/messages"]) == []
    finally:
        for client in opened:
            if client.connected:
                await client.disconnect()
