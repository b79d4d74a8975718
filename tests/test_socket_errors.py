"""Refusals of the message events: foreign chats, bad payloads, error events without an ack, flood budgets.

Every refusal is `{success: false, error: {code, message}}` through the ack (or `error {code, message, event}`
without one), and the same connection keeps working afterwards. Waits are on acks and events only; an
absence is shown with a later marker event on the same socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import socketio

from server.config import Config
from tests.chat_support import MESSAGE_TRAFFIC, MISSING, connect, history, private_chat, rest_send
from tests.conftest import Account, Api, Recorder, Server, Socket, register, start_server

MB = 1024 * 1024


class Nothing:
    """Emit the event with no argument at all."""


# helpers ------------------------------------------------------------------------------------------------------------


async def call(socket: Socket, event: str, payload: Any) -> Any:
    """Ack'd emit of any payload: `None` is sent as JSON null, `Nothing` as no argument."""
    if payload is Nothing:
        return await socket.client.call(event, namespace=socket.namespace, timeout=5)
    return await socket.client.call(event, (payload,), namespace=socket.namespace, timeout=5)


async def emit(socket: Socket, event: str, payload: Any) -> None:
    if payload is Nothing:
        await socket.client.emit(event, namespace=socket.namespace)
    else:
        await socket.client.emit(event, (payload,), namespace=socket.namespace)


def assert_refused(answer: Any, code: str) -> None:
    assert isinstance(answer, dict) and answer.get("success") is False, answer
    assert set(answer) == {"success", "error"}, answer
    error = answer["error"]
    assert error["code"] == code, answer
    assert isinstance(error["message"], str) and error["message"], answer
    assert set(error) <= {"code", "message", "details"}, answer


async def still_works(socket: Socket, chat_id: str, note: Any = "") -> None:
    answer = await socket.call("send_message", {"chatId": chat_id, "content": "still here"})
    assert answer["success"] is True, (note, answer)


# a chat that is not yours answers like one that does not exist --------------------------------------------------------


CHAT_EVENTS = [
    ("send_message", lambda chat: {"chatId": chat, "content": "let me in"}),
    ("typing_start", lambda chat: {"chatId": chat}),
    ("typing_stop", lambda chat: {"chatId": chat}),
    ("mark_read", lambda chat: {"chatId": chat}),
    ("sync", lambda chat: {"chatId": chat, "after": "2000-01-01T00:00:00.000Z"}),
]
MESSAGE_REF_EVENTS = [
    ("edit_message", lambda message: {"messageId": message, "content": "hijacked"}),
    ("delete_message", lambda message: {"messageId": message}),
    ("message_delivered", lambda message: {"messageId": message}),
]


async def test_a_non_member_gets_exactly_the_answer_of_a_missing_chat(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob, mallory = await make_user(), await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    own_chat = await private_chat(api, mallory, alice)
    message = await rest_send(api, alice, chat, "private")
    await rest_send(api, alice, chat, "unread")
    bob_socket = await connect(sockets, bob)
    intruder = await connect(sockets, mallory)

    for event, payload in CHAT_EVENTS:
        foreign = await intruder.call(event, payload(chat))
        missing = await intruder.call(event, payload(MISSING))
        assert_refused(foreign, "MSG_002")
        assert foreign == missing, event
    for event, payload in MESSAGE_REF_EVENTS:
        foreign = await intruder.call(event, payload(message["id"]))
        missing = await intruder.call(event, payload(MISSING))
        assert_refused(foreign, "MSG_002")
        assert foreign == missing, event
    # mark_read naming a message of the foreign chat
    assert await intruder.call("mark_read", {"chatId": chat, "messageId": message["id"]}) == await intruder.call(
        "mark_read", {"chatId": MISSING, "messageId": message["id"]}
    )

    # nothing happened: the message is intact and the members heard nothing from the intruder
    stored = next(m for m in await history(api, alice, chat) if m["id"] == message["id"])
    assert stored["content"] == "private" and stored["deleted"] is False and stored["status"] == "sent"
    assert len(await history(api, alice, chat)) == 2
    marker = await rest_send(api, alice, chat, "marker")
    assert (await bob_socket.seen.wait_for("new_message"))[-1]["id"] == marker["id"]
    assert [name for name, _ in bob_socket.seen.events if name in MESSAGE_TRAFFIC] == ["new_message"]
    await still_works(intruder, own_chat)


# bad payloads ---------------------------------------------------------------------------------------------------------

GENERIC_BAD: list[Any] = [Nothing, None, 42, 3.5, True, "text", "", [1, 2], [], {}]


def bad_payloads(event: str, chat: str, message: str) -> list[Any]:
    """Everything `event` must refuse with `VAL_001`, beyond the generic shapes."""
    injection = {"$ne": None}
    per_event: dict[str, list[Any]] = {
        "send_message": [
            {"content": "no chat"},
            {"chatId": injection, "content": "x"},
            {"chatId": 123, "content": "x"},
            {"chatId": "not-an-id", "content": "x"},
            {"chatId": chat},
            {"chatId": chat, "content": ""},
            {"chatId": chat, "content": "   "},
            {"chatId": chat, "content": 5},
            {"chatId": chat, "content": ["x"]},
            {"chatId": chat, "content": "x" * 10_001},
            {"chatId": chat, "content": "x" * MB},
            {"chatId": chat, "content": "x", "type": "sticker"},
            {"chatId": chat, "content": "x", "type": 1},
            {"chatId": chat, "content": "x", "metadata": [1]},
            {"chatId": chat, "content": "x", "metadata": "meta"},
            {"chatId": chat, "content": "x", "metadata": {"blob": "y" * 9000}},
            {"chatId": chat, "content": "x", "replyTo": "nope"},
            {"chatId": chat, "content": "x", "replyTo": MISSING},
            {"chatId": chat, "content": "x", "clientId": 7},
            {"chatId": chat, "content": "x", "clientId": ""},
            {"chatId": chat, "content": "x", "clientId": "c" * 101},
        ],
        "edit_message": [
            {"content": "no id"},
            {"messageId": message},
            {"messageId": injection, "content": "x"},
            {"messageId": 5, "content": "x"},
            {"messageId": message, "content": ""},
            {"messageId": message, "content": 5},
            {"messageId": message, "content": "x" * 10_001},
            {"messageId": message, "content": "x", "metadata": [1]},
        ],
        "delete_message": [{"messageId": injection}, {"messageId": 5}, {"messageId": "zz"}, {"messageId": None}],
        "typing_start": [{"chatId": injection}, {"chatId": 5}, {"chatId": "zz"}, {"chatId": None}],
        "typing_stop": [{"chatId": injection}, {"chatId": 5}, {"chatId": "zz"}, {"chatId": None}],
        "mark_read": [
            {"chatId": injection},
            {"chatId": 5},
            {"messageId": message},
            {"chatId": chat, "messageId": injection},
            {"chatId": chat, "messageId": 5},
            {"chatId": chat, "messageId": MISSING},
        ],
        "message_delivered": [{"messageId": injection}, {"messageId": ["x"]}, {"messageId": "zz"}, {"chatId": chat}],
        "sync": [
            {"chatId": chat},
            {"after": injection},
            {"after": 5},
            {"after": None},
            {"after": ""},
            {"after": "yesterday"},
            {"after": "2024-13-45T00:00:00Z"},
            {"after": "ffffffffffff000000000000"},
            {"after": "9999-12-31T23:59:59-12:00"},
            {"after": "x" * 41},
            {"after": message, "chatId": injection},
            {"after": message, "chatId": 5},
            {"after": message, "limit": 0},
            {"after": message, "limit": 1001},
            {"after": message, "limit": "ten"},
        ],
    }
    return [*GENERIC_BAD, {"chatId": injection, "messageId": injection}, *per_event[event]]


EVENTS = [
    "send_message",
    "edit_message",
    "delete_message",
    "typing_start",
    "typing_stop",
    "mark_read",
    "message_delivered",
    "sync",
]


@pytest.fixture
async def talk(api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]) -> dict[str, Any]:
    """Alice's socket on `/`, a chat with Bob and one of Alice's messages in it."""
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    message = await rest_send(api, alice, chat, "original")
    return {"alice": alice, "chat": chat, "message": message["id"], "socket": await connect(sockets, alice)}


@pytest.mark.parametrize("event", EVENTS)
async def test_bad_payloads_are_refused_with_val_001_and_the_connection_survives(
    api: Api, talk: dict[str, Any], event: str
) -> None:
    socket, chat = talk["socket"], talk["chat"]
    payloads = bad_payloads(event, chat, talk["message"])

    for payload in payloads:
        answer = await call(socket, event, payload)
        assert_refused(answer, "VAL_001")
        await still_works(socket, chat, (event, str(payload)[:80]))

    stored = await history(api, talk["alice"], chat)
    assert len(stored) == 1 + len(payloads)  # the original and one good send per refusal, nothing else
    original = next(m for m in stored if m["id"] == talk["message"])
    assert original["content"] == "original" and original["deleted"] is False


@pytest.mark.parametrize("event", EVENTS)
async def test_an_unknown_chat_or_message_is_refused_with_msg_002(talk: dict[str, Any], event: str) -> None:
    socket = talk["socket"]
    payload = {
        "send_message": {"chatId": MISSING, "content": "anyone?"},
        "edit_message": {"messageId": MISSING, "content": "x"},
        "delete_message": {"messageId": MISSING},
        "typing_start": {"chatId": MISSING},
        "typing_stop": {"chatId": MISSING},
        "mark_read": {"chatId": MISSING},
        "message_delivered": {"messageId": MISSING},
        "sync": {"chatId": MISSING, "after": talk["message"]},
    }[event]

    assert_refused(await socket.call(event, payload), "MSG_002")
    await still_works(socket, talk["chat"])


@pytest.mark.parametrize("event", EVENTS)
async def test_without_an_ack_failures_arrive_as_error_events(talk: dict[str, Any], event: str) -> None:
    socket, chat = talk["socket"], talk["chat"]
    unknown = {"chatId": MISSING, "messageId": MISSING, "content": "x", "after": talk["message"]}

    await emit(socket, event, None)
    await emit(socket, event, {"chatId": {"$ne": None}, "messageId": {"$ne": None}})
    await emit(socket, event, unknown)

    errors = await socket.seen.wait_for("error", 3)
    assert [e["code"] for e in errors] == ["VAL_001", "VAL_001", "MSG_002"], errors
    for error in errors:
        assert error["event"] == event and isinstance(error["message"], str) and error["message"], error
        assert set(error) <= {"code", "message", "details", "event"}, error
    await still_works(socket, chat)
    assert len(socket.seen.of("error")) == 3


async def test_a_message_event_on_a_namespace_that_does_not_carry_it_is_refused(
    api: Api, make_user: Callable[..., Any], sockets: Callable[..., Any]
) -> None:
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    for namespace in ("/calls", "/status"):
        socket = await connect(sockets, alice, namespace)
        assert_refused(await socket.call("send_message", {"chatId": chat, "content": "wrong door"}), "VAL_001")
    assert await history(api, alice, chat) == []


# flood control --------------------------------------------------------------------------------------------------------


@pytest.fixture
async def limited(config: Config) -> AsyncIterator[Server]:
    """A server whose budgets allow a burst of three messages and three typing events."""
    srv = await start_server(
        config.replace(
            limits={"messages_per_second": 1, "messages_burst": 3, "typing_per_second": 1, "typing_burst": 3}
        )
    )
    yield srv
    await srv.runner.cleanup()


@pytest.fixture
async def limited_api(limited: Server) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, limited.api)


async def limited_socket(server: Server, user: Account, clients: list[Any], namespace: str = "/") -> Socket:
    client = socketio.AsyncClient(reconnection=False)
    seen = Recorder()
    for name in ("authenticated", "error", "disconnect", *MESSAGE_TRAFFIC):
        client.on(name, _record(seen, name), namespace=namespace)
    await client.connect(
        server.url, namespaces=[namespace], auth={"token": user.token}, transports=["websocket"], wait_timeout=5
    )
    clients.append(client)
    await seen.wait_for("authenticated")
    return Socket(client, namespace, seen)


def _record(seen: Recorder, name: str) -> Callable[..., Any]:
    async def handler(*args: Any) -> None:
        await seen.record(name, args[0] if args else None)

    return handler


@pytest.fixture
async def clients() -> AsyncIterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for client in opened:
        if client.connected:
            await client.disconnect()


def assert_rate_limited(answer: Any) -> None:
    assert_refused(answer, "RATE_001")
    assert answer["error"]["details"]["retryAfter"] > 0, answer


async def test_the_fourth_quick_send_is_refused_and_not_stored(
    limited: Server, limited_api: Api, clients: list[Any]
) -> None:
    alice, bob = await register(limited_api), await register(limited_api)
    chat = await private_chat(limited_api, alice, bob)
    alice_socket = await limited_socket(limited, alice, clients)
    bob_socket = await limited_socket(limited, bob, clients)

    answers = [await alice_socket.call("send_message", {"chatId": chat, "content": f"m{i}"}) for i in range(4)]

    assert [a["success"] for a in answers[:3]] == [True, True, True], answers
    assert_rate_limited(answers[3])
    assert [m["content"] for m in await history(limited_api, alice, chat)] == ["m2", "m1", "m0"]
    # Bob heard the three, and nothing of the refused one (his own marker comes after it)
    marker = await bob_socket.call("send_message", {"chatId": chat, "content": "marker"})
    assert marker["success"] is True, marker
    received = await alice_socket.seen.wait_for("new_message")
    assert [m["content"] for m in received] == ["marker"]
    assert [m["content"] for m in bob_socket.seen.of("new_message")] == ["m0", "m1", "m2"]
    # the connection is still usable: other budgets and reads answer, and it was never cut
    assert (await alice_socket.call("typing_start", {"chatId": chat}))["success"] is True
    synced = await alice_socket.call("sync", {"chatId": chat, "after": "2000-01-01T00:00:00.000Z"})
    assert [m["content"] for m in synced["data"]["messages"]] == ["m0", "m1", "m2", "marker"], synced
    assert_rate_limited(await alice_socket.call("send_message", {"chatId": chat, "content": "m4"}))
    assert alice_socket.client.connected and alice_socket.seen.of("disconnect") == []


async def test_rest_sends_share_the_socket_budget(limited: Server, limited_api: Api, clients: list[Any]) -> None:
    alice, bob = await register(limited_api), await register(limited_api)
    chat = await private_chat(limited_api, alice, bob)
    alice_socket = await limited_socket(limited, alice, clients)
    for i in range(3):
        answer = await alice_socket.call("send_message", {"chatId": chat, "content": f"m{i}"})
        assert answer["success"] is True, answer

    async with limited_api.session.post(
        limited.api + "/messages",
        json={"chatId": chat, "content": "over rest"},
        headers={"Authorization": f"Bearer {alice.token}"},
    ) as response:
        status, body, retry_after = response.status, await response.json(), response.headers.get("Retry-After")

    assert status == 429 and body["success"] is False and body["error"]["code"] == "RATE_001", body
    assert retry_after is not None and int(retry_after) > 0
    assert body["error"]["details"]["retryAfter"] > 0
    assert len(await history(limited_api, alice, chat)) == 3


async def test_socket_sends_are_refused_once_rest_spent_the_budget(
    limited: Server, limited_api: Api, clients: list[Any]
) -> None:
    alice, bob = await register(limited_api), await register(limited_api)
    chat = await private_chat(limited_api, alice, bob)
    for i in range(3):
        await rest_send(limited_api, alice, chat, f"m{i}")
    alice_socket = await limited_socket(limited, alice, clients, "/messages")

    assert_rate_limited(await alice_socket.call("send_message", {"chatId": chat, "content": "one too many"}))
    await alice_socket.emit("send_message", {"chatId": chat, "content": "and again"})
    (error,) = await alice_socket.seen.wait_for("error")
    assert error["code"] == "RATE_001" and error["event"] == "send_message" and error["details"]["retryAfter"] > 0
    assert len(await history(limited_api, alice, chat)) == 3


@pytest.mark.parametrize("event", ["typing_start", "typing_stop"])
async def test_typing_has_its_own_budget(limited: Server, limited_api: Api, clients: list[Any], event: str) -> None:
    alice, bob = await register(limited_api), await register(limited_api)
    chat = await private_chat(limited_api, alice, bob)
    alice_socket = await limited_socket(limited, alice, clients)
    bob_socket = await limited_socket(limited, bob, clients)

    answers = [await alice_socket.call(event, {"chatId": chat}) for _ in range(4)]

    assert [a["success"] for a in answers[:3]] == [True, True, True], answers
    assert_rate_limited(answers[3])
    # the typing budget is not the message budget: the connection still sends, and Bob got three, not four
    sent = await alice_socket.call("send_message", {"chatId": chat, "content": "marker"})
    assert sent["success"] is True, sent
    await bob_socket.seen.wait_for("new_message")
    assert len(bob_socket.seen.of(event)) == 3
    assert_rate_limited(
        await alice_socket.call("typing_stop" if event == "typing_start" else "typing_start", {"chatId": chat})
    )
    assert alice_socket.client.connected
