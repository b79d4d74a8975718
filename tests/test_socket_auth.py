"""Socket.IO foundation: the three ways to authenticate, refusals, the deadline, revocation, the ack envelope.

Every wait is on an event or an ack (`Recorder.wait_for`, `AsyncClient.call`), never on the clock; the
deadline tests run a server whose `socketio.auth_timeout` is half a second.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import pytest
import socketio

from server.config import Config
from tests.conftest import Account, Api, Recorder, Server, register, start_server

NAMESPACES = ["/", "/messages", "/calls", "/status"]
STATUS_NAMESPACES = ["/", "/status"]  # the namespaces that carry `update_status`
PROBE_EVENTS = ("connect", "authenticated", "unauthorized", "error", "disconnect")
MB = 1024 * 1024


# helpers ------------------------------------------------------------------------------------------------------------


def _record(seen: Recorder, name: str) -> Callable[..., Any]:
    async def handler(*args: Any) -> None:
        await seen.record(name, args[0] if args else None)

    return handler


@dataclass
class Probe:
    """A raw client that records `connect` too, so the order connect -> unauthorized -> disconnect shows.

    It connects with `wait=False`: `AsyncClient.connect(wait=True)` only marks itself connected after
    the handshake returns, and would drop a server disconnect that arrives before that.
    """

    client: socketio.AsyncClient
    namespace: str
    seen: Recorder

    def order(self) -> list[str]:
        return [name for name, _ in self.seen.events if name in ("connect", "unauthorized", "disconnect")]

    async def call(self, event: str, data: Any = None) -> Any:
        await self.seen.wait_for("connect")
        return await self.client.call(event, data, namespace=self.namespace, timeout=5)


async def open_probe(
    clients: list[socketio.AsyncClient],
    url: str,
    namespace: str = "/",
    *,
    token: str | None = None,
    via: str = "auth",
    transports: list[str] | None = None,
    namespaces: list[str] | None = None,
) -> Probe:
    client = socketio.AsyncClient(reconnection=False)
    seen = Recorder()
    for ns in namespaces or [namespace]:
        for name in PROBE_EVENTS:
            client.on(name, _record(seen, name if ns == namespace else f"{ns}:{name}"), namespace=ns)
    auth = {"token": token} if token is not None and via == "auth" else None
    if token is not None and via == "query":
        url += f"?token={token}"
    await client.connect(
        url, namespaces=namespaces or [namespace], auth=auth, transports=transports or ["websocket"], wait=False
    )
    clients.append(client)
    return Probe(client, namespace, seen)


@pytest.fixture
async def probes(server: Server) -> AsyncIterator[Callable[..., Any]]:
    clients: list[socketio.AsyncClient] = []

    async def probe(namespace: str = "/", **kwargs: Any) -> Probe:
        return await open_probe(clients, server.url, namespace, **kwargs)

    yield probe
    for client in clients:
        if client.connected:
            await client.disconnect()


def jwt_secret(config: Config) -> str:
    return (config.data_path / "jwt_secret").read_text(encoding="ascii").strip()


def recraft(config: Config, token: str, **claims: Any) -> str:
    """The same access token re-signed with the server's secret and some claims changed."""
    secret = jwt_secret(config)
    payload = jwt.decode(token, secret, algorithms=["HS256"])
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def assert_failure(answer: Any, code: str) -> dict[str, Any]:
    """`{success: false, error: {code, message[, details]}}`, nothing else."""
    assert isinstance(answer, dict), answer
    assert set(answer) == {"success", "error"}, answer
    assert answer["success"] is False
    error = answer["error"]
    assert error["code"] == code, answer
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) <= {"code", "message", "details"}, answer
    return error


async def assert_authenticated(call: Callable[..., Any], namespace: str, status: str = "away") -> None:
    """An authenticated socket gets past the AUTH_001 gate on every namespace."""
    if namespace in STATUS_NAMESPACES:
        answer = await call("update_status", {"status": status})
        assert answer["success"] is True, answer
        assert answer["data"]["status"] == status
    else:  # no events of its own yet: an unknown event is refused for what it is, not for the caller
        assert_failure(await call("no_such_event", {}), "VAL_001")


async def assert_kicked(probe: Probe, code: str = "AUTH_001", signed_in: bool = False) -> dict[str, Any]:
    """Connection accepted, then `unauthorized {code, message}`, then a server disconnect."""
    await probe.seen.wait_for("disconnect")
    assert probe.order() == ["connect", "unauthorized", "disconnect"], probe.seen.events
    (event,) = probe.seen.of("unauthorized")
    assert event["code"] == code and isinstance(event["message"], str) and event["message"]
    assert len(probe.seen.of("authenticated")) == int(signed_in)
    assert probe.namespace not in probe.client.namespaces
    return event


# the three ways to authenticate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("via", ["auth", "query"])
async def test_handshake_authentication(make_user, sockets, namespace, via):
    alice = await make_user()
    sock = await sockets(alice.token, namespace=namespace, via=via)
    (event,) = await sock.seen.wait_for("authenticated")
    assert event["user"]["id"] == alice.id
    assert event["user"]["username"] == alice.username
    assert "passwordHash" not in event["user"] and "password_hash" not in event["user"]
    await assert_authenticated(sock.call, namespace)
    assert sock.seen.of("unauthorized") == [] and sock.seen.of("disconnect") == []


@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_authenticate_event(make_user, sockets, namespace):
    alice = await make_user()
    sock = await sockets(namespace=namespace)
    answer = await sock.call("authenticate", {"token": alice.token})
    assert set(answer) == {"success", "data"} and answer["success"] is True, answer
    assert set(answer["data"]) == {"user"} and answer["data"]["user"]["id"] == alice.id
    (event,) = await sock.seen.wait_for("authenticated")
    assert event["user"]["id"] == alice.id
    await assert_authenticated(sock.call, namespace)


async def test_authenticate_event_without_ack(make_user, sockets):
    alice = await make_user()
    sock = await sockets()
    await sock.emit("authenticate", {"token": alice.token})
    (event,) = await sock.seen.wait_for("authenticated")
    assert event["user"]["id"] == alice.id
    await assert_authenticated(sock.call, "/")
    assert sock.seen.of("error") == []


async def test_each_socket_gets_its_own_user(make_user, sockets):
    alice, bob = await make_user(), await make_user()
    a, b = await sockets(alice.token), await sockets(bob.token, via="query")
    assert (await a.seen.wait_for("authenticated"))[0]["user"]["id"] == alice.id
    assert (await b.seen.wait_for("authenticated"))[0]["user"]["id"] == bob.id


# bad tokens ----------------------------------------------------------------------------------------------------------


def bad_token(kind: str, account: Account, config: Config) -> str:
    now = int(time.time())
    if kind == "garbage":
        return "not-a-jwt"
    if kind == "expired":
        return recraft(config, account.token, iat=now - 120, exp=now - 60)
    if kind == "refresh":
        return account.refresh_token
    if kind == "wrong-secret":
        payload = jwt.decode(account.token, options={"verify_signature": False})
        return jwt.encode(payload, "x" * 64, algorithm="HS256")
    raise AssertionError(kind)


BAD_KINDS = ["garbage", "expired", "refresh", "wrong-secret"]


async def test_recrafted_token_is_accepted(config, make_user, sockets):
    """The control for `expired`: the same re-signing with a future expiry is a good token."""
    alice = await make_user()
    token = recraft(config, alice.token, exp=int(time.time()) + 600)
    sock = await sockets(token)
    assert (await sock.seen.wait_for("authenticated"))[0]["user"]["id"] == alice.id


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("via", ["auth", "query"])
async def test_bad_token_in_handshake(config, make_user, probes, kind, via):
    alice = await make_user()
    probe = await probes(token=bad_token(kind, alice, config), via=via)
    event = await assert_kicked(probe)
    if kind == "expired":
        assert "expired" in event["message"].lower()


@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_bad_token_in_handshake_each_namespace(make_user, probes, namespace):
    probe = await probes(namespace, token="garbage")
    await assert_kicked(probe)


@pytest.mark.parametrize("kind", BAD_KINDS)
async def test_bad_token_in_authenticate_event(config, make_user, probes, kind):
    alice = await make_user()
    probe = await probes()
    answer = await probe.call("authenticate", {"token": bad_token(kind, alice, config)})
    assert_failure(answer, "AUTH_001")
    await assert_kicked(probe)


async def test_bad_token_in_authenticate_event_without_ack(probes):
    probe = await probes()
    await probe.seen.wait_for("connect")
    await probe.client.emit("authenticate", {"token": "garbage"})
    await assert_kicked(probe)
    (error,) = probe.seen.of("error")
    assert error["code"] == "AUTH_001" and error["event"] == "authenticate"


async def test_malformed_authenticate_payload_is_a_validation_error(make_user, sockets):
    """No token at all is a bad payload, not a bad token: refused, and the socket may try again."""
    alice = await make_user()
    sock = await sockets()
    for payload in ({}, {"token": ""}, {"token": 42}, "token", (None,)):
        assert_failure(await sock.call("authenticate", payload), "VAL_001")
    answer = await sock.call("authenticate", {"token": alice.token})
    assert answer["success"] is True
    assert sock.seen.of("unauthorized") == [] and sock.seen.of("disconnect") == []


# before authentication -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_events_before_authentication_are_refused(make_user, sockets, namespace):
    alice = await make_user()
    sock = await sockets(namespace=namespace)
    for event in ("update_status", "send_message", "no_such_event"):
        assert_failure(await sock.call(event, {"status": "busy"}), "AUTH_001")
    await sock.emit("update_status", {"status": "busy"})
    (error,) = await sock.seen.wait_for("error")
    assert error["code"] == "AUTH_001" and error["event"] == "update_status" and error["message"]
    # still usable: authenticating now works
    assert (await sock.call("authenticate", {"token": alice.token}))["success"] is True
    await assert_authenticated(sock.call, namespace)
    assert sock.seen.of("unauthorized") == [] and sock.seen.of("disconnect") == []


# the authentication deadline -----------------------------------------------------------------------------------------


@dataclass
class QuickServer:
    server: Server
    api: Api
    clients: list[socketio.AsyncClient]

    async def probe(self, namespace: str = "/", **kwargs: Any) -> Probe:
        return await open_probe(self.clients, self.server.url, namespace, **kwargs)


@pytest.fixture
async def quick(config: Config) -> AsyncIterator[QuickServer]:
    """A server whose authentication deadline is half a second."""
    srv = await start_server(config.replace(socketio={"auth_timeout": 0.5}))
    clients: list[socketio.AsyncClient] = []
    try:
        async with aiohttp.ClientSession() as session:
            yield QuickServer(srv, Api(session, srv.api), clients)
            for client in clients:
                if client.connected:
                    await client.disconnect()
    finally:
        await srv.runner.cleanup()


@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_deadline_disconnects_a_silent_socket(quick, namespace):
    probe = await quick.probe(namespace)
    event = await assert_kicked(probe)
    assert event["code"] == "AUTH_001"


async def test_deadline_spares_sockets_that_authenticated(quick):
    alice = await register(quick.api)
    silent = await quick.probe()
    by_handshake = await quick.probe(token=alice.token)
    by_event = await quick.probe("/status")
    assert (await by_event.call("authenticate", {"token": alice.token}))["success"] is True
    await by_handshake.seen.wait_for("authenticated")
    await assert_kicked(silent)  # the deadline has passed for all three
    await assert_authenticated(by_handshake.call, "/")
    await assert_authenticated(by_event.call, "/status", "busy")
    for probe in (by_handshake, by_event):
        assert probe.seen.of("unauthorized") == [] and probe.seen.of("disconnect") == []


async def test_deadline_cannot_be_dodged_with_reserved_event_names(quick):
    """A client emitting `disconnect`/`connect` must not reach the lifecycle handlers."""
    probe = await quick.probe()
    for event in ("disconnect", "connect"):
        assert_failure(await probe.call(event, {}), "AUTH_001")
    await assert_kicked(probe)


# revocation ----------------------------------------------------------------------------------------------------------


async def test_logged_out_token_is_refused(api, make_user, probes, sockets):
    alice = await make_user()
    status, body = await api.post("/auth/logout", token=alice.token)
    assert status == 200, body
    await assert_kicked(await probes(token=alice.token))
    await assert_kicked(await probes("/status", token=alice.token, via="query"))
    probe = await probes("/messages")
    assert_failure(await probe.call("authenticate", {"token": alice.token}), "AUTH_001")
    await assert_kicked(probe)


async def test_logout_ends_the_sockets_of_that_login_only(api, make_user, probes, sockets):
    alice = await make_user()
    status, body = await api.post("/auth/login", json={"email": alice.email, "password": alice.password})
    assert status == 200, body
    other_login = body["data"]["token"]

    root = await probes(token=alice.token)
    by_event = await probes("/messages")
    assert (await by_event.call("authenticate", {"token": alice.token}))["success"] is True
    multiplexed = await probes("/", token=alice.token, namespaces=NAMESPACES)  # one connection, four namespaces
    kept = [await sockets(other_login), await sockets(other_login, namespace="/status", via="query")]
    for probe in (root, multiplexed):
        await probe.seen.wait_for("authenticated")
    for ns in NAMESPACES[1:]:
        await multiplexed.seen.wait_for(f"{ns}:authenticated")
    for sock in kept:
        await sock.seen.wait_for("authenticated")

    status, body = await api.post("/auth/logout", token=alice.token)
    assert status == 200, body

    for probe in (root, by_event, multiplexed):
        event = await assert_kicked(probe, signed_in=True)
        assert event["code"] == "AUTH_001"
    for ns in NAMESPACES[1:]:
        (event,) = await multiplexed.seen.wait_for(f"{ns}:unauthorized")
        assert event["code"] == "AUTH_001"
        await multiplexed.seen.wait_for(f"{ns}:disconnect")
    assert not root.client.connected and not by_event.client.connected and not multiplexed.client.connected
    for sock in kept:  # the other login of the same user is untouched
        await assert_authenticated(sock.call, sock.namespace)
        assert sock.seen.of("unauthorized") == [] and sock.seen.of("disconnect") == []
    status, body = await api.get("/auth/me", token=other_login)
    assert status == 200 and body["data"]["id"] == alice.id


# the ack envelope ----------------------------------------------------------------------------------------------------

BAD_PAYLOADS = {
    "absent": None,
    "null": (None,),
    "string": "busy",
    "number": 42,
    "list": ["busy"],
    "unknown-status": {"status": "nope"},
    "operator": {"status": {"$ne": 1}},
    "missing-status": {"state": "busy"},
    "megabyte-string": "x" * MB,
    "megabyte-status": {"status": "x" * MB},
}


@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_unknown_event(make_user, sockets, namespace):
    alice = await make_user()
    sock = await sockets(alice.token, namespace=namespace)
    await sock.seen.wait_for("authenticated")
    assert_failure(await sock.call("no_such_event", {"x": 1}), "VAL_001")
    await sock.emit("no_such_event", {"x": 1})
    (error,) = await sock.seen.wait_for("error")
    assert error["code"] == "VAL_001" and error["event"] == "no_such_event" and error["message"]
    await assert_authenticated(sock.call, namespace)


@pytest.mark.parametrize("namespace", STATUS_NAMESPACES)
@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
async def test_bad_payload_with_ack(make_user, sockets, namespace, payload):
    alice = await make_user()
    sock = await sockets(alice.token, namespace=namespace)
    await sock.seen.wait_for("authenticated")
    answer = await sock.call("update_status", payload)
    error = assert_failure(answer, "VAL_001")
    assert isinstance(error.get("details"), dict) and error["details"], answer
    assert len(str(answer)) < 1000, "the error must not echo the payload back"
    await assert_authenticated(sock.call, namespace)  # the connection is still usable
    assert sock.seen.of("disconnect") == []


@pytest.mark.parametrize("namespace", STATUS_NAMESPACES)
async def test_bad_payloads_without_ack(make_user, sockets, namespace):
    alice = await make_user()
    sock = await sockets(alice.token, namespace=namespace)
    await sock.seen.wait_for("authenticated")
    for count, payload in enumerate(BAD_PAYLOADS.values(), start=1):
        await sock.emit("update_status", payload)
        errors = await sock.seen.wait_for("error", count)
        assert set(errors[-1]) >= {"code", "message", "event"}
        assert errors[-1]["code"] == "VAL_001" and errors[-1]["event"] == "update_status", (payload, errors[-1])
    await assert_authenticated(sock.call, namespace)
    assert sock.seen.of("disconnect") == []


async def test_good_call_without_ack_sends_no_error(make_user, sockets):
    alice = await make_user()
    sock = await sockets(alice.token)
    await sock.seen.wait_for("authenticated")
    await sock.emit("update_status", {"status": "busy"})
    await sock.emit("no_such_event")  # the error for this one proves the first was handled without one
    (error,) = await sock.seen.wait_for("error")
    assert error["event"] == "no_such_event"


async def test_reserved_event_names_do_not_reach_lifecycle_handlers(api, make_user, sockets):
    """`connect`/`disconnect` sent as events are unknown events, and do not sign the socket off or out."""
    alice, bob = await make_user(), await make_user()
    sock = await sockets(alice.token)
    await sock.seen.wait_for("authenticated")
    for event in ("disconnect", "connect"):
        assert_failure(await sock.call(event, {}), "VAL_001")
        await sock.emit(event, {})
    errors = await sock.seen.wait_for("error", 2)
    assert [(e["code"], e["event"]) for e in errors] == [("VAL_001", "disconnect"), ("VAL_001", "connect")]
    await assert_authenticated(sock.call, "/", "online")  # still signed in
    status, body = await api.get(f"/users/{alice.id}", token=bob.token)
    assert status == 200 and body["data"]["presence"] == "online", body


# transports and repeats ----------------------------------------------------------------------------------------------


async def test_long_polling_transport(make_user, sockets, probes):
    alice = await make_user()
    by_handshake = await sockets(alice.token, transports=["polling"])
    assert (await by_handshake.seen.wait_for("authenticated"))[0]["user"]["id"] == alice.id
    await assert_authenticated(by_handshake.call, "/")
    by_event = await sockets(namespace="/status", transports=["polling"])
    assert_failure(await by_event.call("update_status", {"status": "busy"}), "AUTH_001")
    assert (await by_event.call("authenticate", {"token": alice.token}))["data"]["user"]["id"] == alice.id
    await assert_authenticated(by_event.call, "/status", "busy")
    await assert_kicked(await probes(token="garbage", transports=["polling"]))


@pytest.mark.parametrize("first", ["handshake", "event"])
async def test_authenticating_twice_is_refused(api, make_user, sockets, first):
    alice, bob = await make_user(), await make_user()
    if first == "handshake":
        sock = await sockets(alice.token)
    else:
        sock = await sockets()
        assert (await sock.call("authenticate", {"token": alice.token}))["success"] is True
    await sock.seen.wait_for("authenticated")
    for token in (alice.token, bob.token, "garbage"):
        answer = await sock.call("authenticate", {"token": token})
        assert answer["success"] is False and answer["error"]["code"] in ("VAL_001", "AUTH_001"), answer
    await assert_authenticated(sock.call, "/")
    assert len(sock.seen.of("authenticated")) == 1
    assert sock.seen.of("unauthorized") == [] and sock.seen.of("disconnect") == []
    assert (await sock.call("update_status", {"status": "invisible"}))["success"] is True
    # still alice's socket: the refused tokens changed nothing
    status, body = await api.get("/auth/me", token=alice.token)
    assert status == 200 and body["data"]["presence"] == "invisible", body
    status, body = await api.get("/auth/me", token=bob.token)
    assert status == 200 and body["data"]["presence"] != "invisible", body
