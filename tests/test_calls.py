"""Calls over REST, and the one state machine REST and sockets share.

The server runs with a 0.5 s ring timeout and a 0.2 s presence grace period. "Online" means a live
authenticated socket; a registered user with none is offline. Every wait is on an answer or an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest

from server.config import Config
from tests.call_support import (
    fast_server,
    flush,
    member,
    online,
    rest_act,
    rest_get,
    rest_history,
    rest_start,
    sio_act,
    sio_start,
    statuses,
    updates_of,
    wait_status,
    wait_update,
)
from tests.chat_support import ISO, MISSING, group_chat, private_chat
from tests.conftest import Api, Server
from tests.rest_support import assert_error

pytestmark = pytest.mark.backends  # each test runs on SQLite and on FerretDB (tests/conftest.py)

Users = Callable[..., Any]


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    srv = await fast_server(config)
    yield srv
    await srv.runner.cleanup()


# starting and reading -----------------------------------------------------------------------------------------------


async def test_post_calls_answers_201_with_the_call(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob = await make_user(), await make_user()
    await online(sockets, bob)

    status, body = await api.post("/calls", token=alice.token, json={"type": "video", "participants": [bob.id]})

    assert status == 201, body
    assert body["success"] is True, body
    call = body["data"]
    assert call["type"] == "video" and call["status"] == "ringing", call
    assert call["chatId"] is None and call["initiatorId"] == alice.id
    assert call["duration"] is None and call["startedAt"] is None and call["endedAt"] is None
    assert ISO.match(call["createdAt"]), call
    caller, invitee = call["participants"]
    assert caller["id"] == alice.id and caller["username"] == alice.username and caller["avatar"] is None
    assert caller["status"] == "answered" and caller["reason"] is None and caller["leftAt"] is None
    assert ISO.match(caller["joinedAt"]), caller
    assert invitee == {
        "id": bob.id,
        "username": bob.username,
        "avatar": None,
        "status": "invited",
        "reason": None,
        "joinedAt": None,
        "leftAt": None,
    }
    # both participants read the same call
    assert await rest_get(api, alice, call["id"]) == call
    assert await rest_get(api, bob, call["id"]) == call


async def test_get_call_answers_404_to_anyone_but_its_participants(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await online(sockets, bob)
    call = await rest_start(api, alice, bob)

    for user, call_id in ((carol, call["id"]), (alice, MISSING), (alice, "not-an-id")):
        status, body = await api.get(f"/calls/{call_id}", token=user.token)
        assert_error(status, body, 404, "RES_002")
    # nor can an outsider act on it
    for action in ("answer", "reject", "end"):
        status, body = await api.post(f"/calls/{call['id']}/{action}", token=carol.token)
        assert_error(status, body, 404, "RES_002")
    status, body = await api.get(f"/calls/{call['id']}")
    assert_error(status, body, 401, "AUTH_001")
    assert (await rest_get(api, alice, call["id"]))["status"] == "ringing"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "type"),
        ({"type": "screen", "participants": [MISSING]}, "type"),
        ({"type": "audio", "participants": "everyone"}, "participants"),
        ({"type": "audio", "participants": ["nope"]}, "participants"),
        ({"type": "audio", "participants": []}, "participants"),
        ({"type": "audio", "chatId": "nope"}, "chatId"),
    ],
)
async def test_post_calls_validates_its_body(api: Api, make_user: Users, body: dict, field: str) -> None:
    alice = await make_user()
    status, answer = await api.post("/calls", token=alice.token, json=body)
    assert_error(status, answer, 422, "VAL_001")
    assert field in answer["error"]["details"], answer


async def test_calling_only_yourself_or_an_unknown_user_fails(api: Api, make_user: Users, sockets: Users) -> None:
    alice = await make_user()
    await online(sockets, alice)
    status, body = await api.post("/calls", token=alice.token, json={"type": "audio", "participants": [alice.id]})
    assert_error(status, body, 422, "VAL_001")
    status, body = await api.post("/calls", token=alice.token, json={"type": "audio", "participants": [MISSING]})
    assert_error(status, body, 404, "AUTH_002")


async def test_call_history_pages_newest_first_and_filters_by_type(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await online(sockets, bob)
    made = []
    for call_type in ("audio", "video", "audio"):
        call = await rest_start(api, alice, bob, call_type=call_type)
        made.append(await rest_act(api, alice, call["id"], "end"))
    live = await rest_start(api, alice, bob, call_type="video")  # still ringing: listed as it is now
    newest_first = [live["id"], *[c["id"] for c in reversed(made)]]

    listed = await rest_history(api, alice)
    assert [c["id"] for c in listed["calls"]] == newest_first
    assert listed["pagination"] == {"page": 1, "limit": 20, "total": 4, "pages": 1}
    assert listed["calls"][0] == await rest_get(api, alice, live["id"])
    assert [c["status"] for c in listed["calls"]] == ["ringing", "cancelled", "cancelled", "cancelled"]

    audio = await rest_history(api, alice, type="audio")
    assert [c["id"] for c in audio["calls"]] == [made[2]["id"], made[0]["id"]], audio
    assert audio["pagination"]["total"] == 2
    video = await rest_history(api, bob, type="video")
    assert [c["id"] for c in video["calls"]] == [live["id"], made[1]["id"]], video

    pages = []
    for page in (1, 2, 3):
        listed = await rest_history(api, alice, page=page, limit=3)
        assert listed["pagination"] == {"page": page, "limit": 3, "total": 4, "pages": 2}
        pages.append([c["id"] for c in listed["calls"]])
    assert pages == [newest_first[:3], newest_first[3:], []]

    assert await rest_history(api, carol) == {
        "calls": [],
        "pagination": {"page": 1, "limit": 20, "total": 0, "pages": 0},
    }


@pytest.mark.parametrize(
    "params",
    [{"page": 0}, {"page": "first"}, {"limit": 0}, {"limit": 101}, {"limit": "all"}, {"type": "screen"}],
)
async def test_call_history_rejects_a_bad_query(api: Api, make_user: Users, params: dict) -> None:
    alice = await make_user()
    status, body = await api.get("/calls", token=alice.token, params=params)
    assert_error(status, body, 422, "VAL_001")
    assert set(body["error"]["details"]) == set(params), body


# the state machine --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start_over", ["rest", "socket"])
async def test_answer_then_end_completes_the_call_whichever_transport(
    api: Api, make_user: Users, sockets: Users, start_over: str
) -> None:
    alice, bob = await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice), await online(sockets, bob)

    if start_over == "rest":  # started over REST, answered over a socket
        call = await rest_start(api, alice, bob)
        answered = await sio_act(bob_socket, "answer_call", call["id"])
    else:  # started over a socket, answered over REST
        call = await sio_start(alice_socket, bob)
        answered = await rest_act(api, bob, call["id"], "answer")

    assert answered["status"] == "ongoing", answered
    assert ISO.match(answered["startedAt"]) and answered["endedAt"] is None, answered
    assert statuses(answered) == {alice.id: "answered", bob.id: "answered"}
    assert ISO.match(member(answered, bob)["joinedAt"]), answered
    assert await wait_status(alice_socket, call["id"], "ongoing") == answered

    ended = await rest_act(api, bob, call["id"], "end")

    assert ended["status"] == "completed", ended
    assert ended["startedAt"] == answered["startedAt"] and ISO.match(ended["endedAt"]), ended
    assert ended["endedAt"] >= ended["startedAt"]
    assert isinstance(ended["duration"], int) and ended["duration"] >= 0, ended
    span = datetime.fromisoformat(ended["endedAt"]) - datetime.fromisoformat(ended["startedAt"])
    assert ended["duration"] == round(span.total_seconds()), ended
    for user in (alice, bob):
        entry = member(ended, user)
        assert entry["status"] == "left" and ISO.match(entry["leftAt"]), ended
        assert entry["joinedAt"] == member(answered, user)["joinedAt"]
    for socket in (alice_socket, bob_socket):
        assert await wait_status(socket, call["id"], "completed") == ended
        assert updates_of(socket, call["id"]) == ["ringing", "ongoing", "completed"]
    assert await rest_get(api, alice, call["id"]) == ended
    # a finished call takes no more actions
    for user, action in ((alice, "end"), (bob, "answer"), (bob, "reject")):
        status, body = await api.post(f"/calls/{call['id']}/{action}", token=user.token)
        assert_error(status, body, 404, "RES_002")


async def test_answering_twice_or_out_of_turn_is_refused(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob = await make_user(), await make_user()
    await online(sockets, bob)
    call = await rest_start(api, alice, bob)
    # the caller is already in: nothing to answer or reject
    for action in ("answer", "reject"):
        status, body = await api.post(f"/calls/{call['id']}/{action}", token=alice.token)
        assert_error(status, body, 409, "CALL_001")
    await rest_act(api, bob, call["id"], "answer")
    for action in ("answer", "reject"):
        status, body = await api.post(f"/calls/{call['id']}/{action}", token=bob.token)
        assert_error(status, body, 409, "CALL_001")
    assert (await rest_get(api, bob, call["id"]))["status"] == "ongoing"


async def test_the_only_invitee_rejecting_makes_the_call_rejected(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob = await make_user(), await make_user()
    alice_socket = await online(sockets, alice)
    bob_socket = await online(sockets, bob, "/calls")
    call = await rest_start(api, alice, bob)

    rejected = await sio_act(bob_socket, "reject_call", call["id"])

    assert rejected["status"] == "rejected", rejected
    assert rejected["startedAt"] is None and rejected["duration"] is None and ISO.match(rejected["endedAt"])
    assert member(rejected, bob)["status"] == "rejected" and member(rejected, bob)["reason"] is None
    assert member(rejected, bob)["joinedAt"] is None
    assert member(rejected, alice)["status"] == "left" and ISO.match(member(rejected, alice)["leftAt"])
    assert await wait_status(alice_socket, call["id"], "rejected") == rejected
    # both are free again: Bob can call Alice
    again = await rest_start(api, bob, alice)
    assert statuses(again) == {bob.id: "answered", alice.id: "invited"}


async def test_the_caller_ending_a_ringing_call_cancels_it(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob = await make_user(), await make_user()
    bob_socket = await online(sockets, bob)
    call = await rest_start(api, alice, bob)

    cancelled = await rest_act(api, alice, call["id"], "end")

    assert cancelled["status"] == "cancelled", cancelled
    assert statuses(cancelled) == {alice.id: "left", bob.id: "missed"}
    assert cancelled["startedAt"] is None and cancelled["duration"] is None and ISO.match(cancelled["endedAt"])
    assert await wait_status(bob_socket, call["id"], "cancelled") == cancelled
    assert updates_of(bob_socket, call["id"]) == ["ringing", "cancelled"]


async def test_an_unanswered_call_is_missed_after_the_ring_timeout(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob = await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice), await online(sockets, bob)
    call = await rest_start(api, alice, bob, call_type="video")

    missed = await wait_status(bob_socket, call["id"], "missed")

    assert statuses(missed) == {alice.id: "left", bob.id: "missed"}, missed
    assert missed["startedAt"] is None and missed["duration"] is None and ISO.match(missed["endedAt"])
    assert await wait_status(alice_socket, call["id"], "missed") == missed
    for user in (alice, bob):
        assert (await rest_history(api, user, type="video"))["calls"] == [missed]
    status, body = await api.post(f"/calls/{call['id']}/answer", token=bob.token)
    assert_error(status, body, 404, "RES_002")
    # nobody is busy any more
    await rest_start(api, bob, alice)


async def test_a_group_call_goes_on_while_two_are_in_it(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    carol_socket = await online(sockets, carol)
    await online(sockets, bob)
    call = await rest_start(api, alice, bob, carol)
    assert statuses(call) == {alice.id: "answered", bob.id: "invited", carol.id: "invited"}

    assert (await rest_act(api, bob, call["id"], "answer"))["status"] == "ongoing"
    both = await rest_act(api, carol, call["id"], "answer")
    assert both["status"] == "ongoing" and statuses(both) == dict.fromkeys((alice.id, bob.id, carol.id), "answered")

    first_out = await rest_act(api, alice, call["id"], "end")  # the caller leaves: Bob and Carol talk on
    assert first_out["status"] == "ongoing", first_out
    assert statuses(first_out) == {alice.id: "left", bob.id: "answered", carol.id: "answered"}
    assert ISO.match(member(first_out, alice)["leftAt"]) and first_out["endedAt"] is None

    last = await rest_act(api, bob, call["id"], "end")
    assert last["status"] == "completed", last
    assert statuses(last) == dict.fromkeys((alice.id, bob.id, carol.id), "left")
    assert member(last, alice)["leftAt"] == member(first_out, alice)["leftAt"]
    assert isinstance(last["duration"], int) and last["duration"] >= 0
    assert await wait_status(carol_socket, call["id"], "completed") == last
    assert updates_of(carol_socket, call["id"]) == ["ringing", "ongoing", "ongoing", "ongoing", "completed"]


async def test_a_group_call_with_one_rejection_goes_on(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await online(sockets, bob), await online(sockets, carol)
    call = await rest_start(api, alice, bob, carol)

    still = await rest_act(api, bob, call["id"], "reject")
    assert still["status"] == "ringing" and statuses(still)[bob.id] == "rejected", still
    talking = await rest_act(api, carol, call["id"], "answer")
    assert talking["status"] == "ongoing", talking
    done = await rest_act(api, carol, call["id"], "end")
    assert done["status"] == "completed", done
    assert statuses(done) == {alice.id: "left", bob.id: "rejected", carol.id: "left"}


async def test_calling_only_offline_users_fails_with_call_002(api: Api, make_user: Users) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()  # nobody has a socket

    body = {"type": "audio", "participants": [bob.id, carol.id]}
    status, answer = await api.post("/calls", token=alice.token, json=body)

    assert_error(status, answer, 409, "CALL_002")
    assert (await rest_history(api, alice))["pagination"]["total"] == 0  # nothing stored for a call never started


async def test_offline_invitees_are_missed_while_the_online_ones_ring(
    api: Api, make_user: Users, sockets: Users
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    bob_socket = await online(sockets, bob)  # Carol stays offline

    call = await rest_start(api, alice, bob, carol)

    assert call["status"] == "ringing", call
    assert statuses(call) == {alice.id: "answered", bob.id: "invited", carol.id: "missed"}
    assert member(call, carol)["reason"] == "offline" and member(call, bob)["reason"] is None
    assert await bob_socket.seen.wait_for("incoming_call") == [call]
    # Carol cannot pick up a call she was never rung for
    status, body = await api.post(f"/calls/{call['id']}/answer", token=carol.token)
    assert_error(status, body, 409, "CALL_001")
    # the call rings on for Bob and ends when he is gone
    answered = await rest_act(api, bob, call["id"], "answer")
    assert answered["status"] == "ongoing" and statuses(answered)[carol.id] == "missed"


async def test_a_user_in_a_call_is_busy(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol, dave = await make_user(), await make_user(), await make_user(), await make_user()
    bob_socket = await online(sockets, bob)
    await online(sockets, dave)
    first = await rest_start(api, alice, bob)  # Bob is ringing in Alice's call

    # calling Bob alone: nobody reachable, and the error says who is busy
    status, body = await api.post("/calls", token=carol.token, json={"type": "audio", "participants": [bob.id]})
    assert_error(status, body, 409, "CALL_001")
    assert body["error"]["details"]["busy"] == [bob.id], body

    # in a group call Bob is reported busy, Dave rings
    group = await rest_start(api, carol, bob, dave)
    assert statuses(group) == {carol.id: "answered", bob.id: "rejected", dave.id: "invited"}
    assert member(group, bob)["reason"] == "busy"
    # Bob was not rung for Carol's call: his only `incoming_call` is Alice's
    await flush(bob_socket)
    assert [c["id"] for c in bob_socket.seen.of("incoming_call")] == [first["id"]]
    # Bob is still busy after answering, and so is Alice
    await rest_act(api, bob, first["id"], "answer")
    await rest_act(api, carol, group["id"], "end")
    status, body = await api.post("/calls", token=carol.token, json={"type": "audio", "participants": [alice.id]})
    assert_error(status, body, 409, "CALL_001")
    assert body["error"]["details"]["busy"] == [alice.id], body


async def test_starting_a_call_while_in_one_is_refused(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await online(sockets, bob), await online(sockets, carol)
    call = await rest_start(api, alice, bob)

    for caller in (alice, bob):  # the caller, and an invitee whose phone is ringing
        status, body = await api.post("/calls", token=caller.token, json={"type": "audio", "participants": [carol.id]})
        assert_error(status, body, 409, "CALL_001")
        assert "busy" not in (body["error"].get("details") or {}), body
    # Carol was not rung by either
    assert (await rest_history(api, carol))["pagination"]["total"] == 0
    await rest_act(api, alice, call["id"], "end")
    await rest_start(api, alice, carol)  # free again


async def test_two_calls_started_at_once_by_one_caller_start_only_one(
    api: Api, make_user: Users, sockets: Users
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await online(sockets, bob), await online(sockets, carol)

    answers = await asyncio.gather(
        *(
            api.post("/calls", token=alice.token, json={"type": "audio", "participants": [user.id]})
            for user in (bob, carol)
        )
    )

    assert sorted(status for status, _ in answers) == [201, 409], answers
    assert (await rest_history(api, alice))["pagination"]["total"] == 1


async def test_a_chat_call_must_be_in_a_chat_of_the_caller(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await online(sockets, bob), await online(sockets, carol)
    foreign = await private_chat(api, bob, carol)

    for chat_id in (foreign, MISSING):
        for extra in ({}, {"participants": [bob.id]}):
            body = {"type": "audio", "chatId": chat_id, **extra}
            status, answer = await api.post("/calls", token=alice.token, json=body)
            assert_error(status, answer, 404, "MSG_002")


async def test_a_call_with_only_a_chat_id_calls_the_chats_other_members(
    api: Api, make_user: Users, sockets: Users
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    bob_socket, carol_socket = await online(sockets, bob), await online(sockets, carol)
    team = await group_chat(api, alice, bob, carol)

    call = await rest_start(api, alice, call_type="video", chatId=team)

    assert call["chatId"] == team, call
    assert statuses(call) == {alice.id: "answered", bob.id: "invited", carol.id: "invited"}
    for socket in (bob_socket, carol_socket):
        assert await socket.seen.wait_for("incoming_call") == [call]
    await rest_act(api, alice, call["id"], "end")

    pair = await private_chat(api, alice, bob)
    call = await rest_start(api, alice, chatId=pair)
    assert call["chatId"] == pair and statuses(call) == {alice.id: "answered", bob.id: "invited"}


async def test_last_socket_closing_leaves_an_ongoing_call(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob = await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice), await online(sockets, bob, "/calls")
    call = await rest_start(api, alice, bob)
    await rest_act(api, bob, call["id"], "answer")

    await bob_socket.client.disconnect()

    completed = await wait_status(alice_socket, call["id"], "completed")
    assert statuses(completed) == {alice.id: "left", bob.id: "left"}, completed
    assert ISO.match(member(completed, bob)["leftAt"]) and completed["duration"] >= 0
    assert await rest_get(api, bob, call["id"]) == completed


async def test_an_invitee_going_offline_while_ringing_is_missed(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice), await online(sockets, bob)
    await online(sockets, carol)
    call = await rest_start(api, alice, bob, carol)

    await bob_socket.client.disconnect()

    # the update that shows Bob gone; the call rings on for Carol
    gone = await wait_update(alice_socket, call["id"], lambda update: statuses(update)[bob.id] != "invited")
    assert gone["status"] == "ringing", gone
    assert member(gone, bob)["status"] == "missed" and member(gone, bob)["reason"] == "offline"
    assert statuses(gone)[carol.id] == "invited"
    assert (await rest_act(api, carol, call["id"], "answer"))["status"] == "ongoing"


async def test_the_caller_going_offline_cancels_a_ringing_call(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob = await make_user(), await make_user()
    alice_socket, bob_socket = await online(sockets, alice), await online(sockets, bob)
    call = await sio_start(alice_socket, bob)

    await alice_socket.client.disconnect()

    cancelled = await wait_status(bob_socket, call["id"], "cancelled")
    assert statuses(cancelled) == {alice.id: "left", bob.id: "missed"}, cancelled


async def test_a_blocked_caller_cannot_reach_the_blocker(api: Api, make_user: Users, sockets: Users) -> None:
    alice, bob, carol, dave = await make_user(), await make_user(), await make_user(), await make_user()
    bob_socket = await online(sockets, bob)
    await online(sockets, carol)
    await online(sockets, dave)
    status, body = await api.post(f"/users/{alice.id}/block", token=bob.token)
    assert status == 200, body

    status, body = await api.post("/calls", token=alice.token, json={"type": "audio", "participants": [bob.id]})
    assert_error(status, body, 409, "CALL_002")  # as if Bob were offline

    call = await rest_start(api, alice, bob, carol)
    assert statuses(call) == {alice.id: "answered", bob.id: "missed", carol.id: "invited"}
    assert member(call, bob)["reason"] == "offline", call
    # Bob hears nothing of Alice's call; Dave's call after it does ring him
    other = await rest_start(api, dave, bob)
    assert await bob_socket.seen.wait_for("incoming_call") == [other]
    await flush(bob_socket)
    assert [c["id"] for c in bob_socket.seen.of("incoming_call")] == [other["id"]]
    assert {u["id"] for u in bob_socket.seen.of("call_status_update")} == {other["id"]}
    # the block is one way: Bob's own calls to Alice still go through once he is free
    await rest_act(api, bob, other["id"], "reject")
    await rest_act(api, alice, call["id"], "end")
    await online(sockets, alice)
    assert statuses(await rest_start(api, bob, alice))[alice.id] == "invited"
