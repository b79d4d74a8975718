"""The published documents: valid, complete, served, and enforced on what the server sends."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from handlers.apispec import GOCHAT, UndocumentedError, build_asyncapi, build_openapi
from handlers.gochat.frames import FRAMES
from handlers.gochat.ws import CLIENT_FRAMES
from handlers.sio.events import EVENTS
from handlers.sio.namespaces import namespace_classes
from schemas.events import ACK_DATA
from server.app import create_app
from server.keys import SIO
from tests.api_contract import EventContract, ack_problems, event_problems, problems
from tests.chat_support import connect, private_chat
from tests.fuzz.ws import fuzz_ws
from tests.gochat_support import GoApi, WsClient, go_register, ws_connect


async def test_openapi_document_is_valid_openapi_3_1(server, api):
    async with api.session.get(f"{server.api}/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"] == "3.1.0"
    validate(document)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_every_rest_route_is_in_the_openapi_document(server, api):
    async with api.session.get(f"{server.api}/openapi.json") as response:
        document = await response.json()
    documented = {(method.upper(), "/api/v1" + path) for path, ops in document["paths"].items() for method in ops}
    routes = {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.resource.canonical.startswith("/api/v1") and route.method != "HEAD"
    }
    assert routes == documented
    assert len(documented) >= 50


def test_a_route_without_a_declaration_stops_the_document(config):
    app = create_app(config)

    async def undocumented(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v1/secret", undocumented)
    with pytest.raises(UndocumentedError, match="/api/v1/secret"):
        build_openapi(app)


def test_every_socket_event_has_a_schema_in_the_asyncapi_document():
    document = build_asyncapi()
    assert document["asyncapi"] == "3.0.0"
    messages = document["components"]["messages"]
    for namespace, cls in namespace_classes().items():
        channel = next(c for c in document["channels"].values() if c["address"] == namespace)
        for event in ("authenticate", *cls.event_schemas):
            assert f"client_{event}" in channel["messages"], (namespace, event)
            assert f"{event}_ack" in channel["messages"], (namespace, event)
            assert event in ACK_DATA
    assert set(EVENTS) <= set(messages)
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', str(document).replace("'", '"'))
    assert refs and set(refs) <= set(document["components"]["schemas"])


def test_the_contract_catches_a_payload_that_breaks_the_document():
    assert event_problems("message_edited", {"messageId": "x", "chatId": "y"})  # content and editedAt missing
    assert event_problems("no_such_event", {})
    assert ack_problems("send_message", {"success": True, "data": {"id": 5}})
    contract = EventContract()
    contract.check("typing_start", {"chatId": "c", "userId": "u"})
    assert any("username" in mismatch for mismatch in contract.mismatches)


async def test_the_harness_checks_every_emit(server, api, make_user, sockets):
    contract_wrapped = server.app[SIO].emit
    assert contract_wrapped.__name__ == "checked_emit"
    alice, bob = await make_user(), await make_user()
    chat = await private_chat(api, alice, bob)
    bob_socket = await connect(sockets, bob)
    alice_socket = await connect(sockets, alice)
    answer = await alice_socket.call("send_message", {"chatId": chat, "content": "checked"})
    assert answer["success"] is True
    (message,) = await bob_socket.seen.wait_for("new_message")
    assert event_problems("new_message", message) == []


async def test_docs_page_renders_both_documents_without_outside_scripts(server, api):
    async with api.session.get(server.url + "/docs") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        page = await response.text()
    assert "/api/v1/openapi.json" in page and "/api/v1/asyncapi.json" in page
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"https?://", page)


# the Go Chat Web door: `/api/openapi.json` and the `/ws` channel of the AsyncAPI document ---------------------------


def _door_routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource.canonical.startswith("/api/")
        and not route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
    }


async def test_gochat_openapi_document_is_valid_openapi_3_1_and_complete(server, api):
    async with api.session.get(f"{server.url}/api/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    validate(document)
    assert document["openapi"] == "3.1.0" and document["servers"] == [{"url": "/api"}]
    documented = {(method.upper(), "/api" + path) for path, ops in document["paths"].items() for method in ops}
    assert documented == _door_routes(server.app)
    assert ("GET", "/api/openapi.json") in documented and len(documented) >= 25
    assert not any(path.startswith("/v1") for path in document["paths"])
    login = document["paths"]["/auth/login"]["post"]
    assert "security" not in login and document["paths"]["/chats"]["get"]["security"] == [{"bearer": []}]
    envelope = login["responses"]["200"]["content"]["application/json"]["schema"]
    assert envelope["properties"]["code"] == {"const": 200}
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/GoLoginOut"}
    assert login["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith("/DoorError")


async def test_the_whatschat_document_keeps_to_its_own_door(server, api):
    async with api.session.get(f"{server.api}/openapi.json") as response:
        document = await response.json()
    assert document["servers"] == [{"url": "/api/v1"}]
    assert not any(name.startswith(("Go", "Door")) for name in document["components"]["schemas"])


def test_an_undeclared_gochat_route_stops_its_document(config):
    app = create_app(config)

    async def undocumented(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/secret", undocumented)
    build_openapi(app)  # not this door's business
    with pytest.raises(UndocumentedError, match="/api/secret"):
        build_openapi(app, GOCHAT)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if isinstance(node.get("$ref"), str) else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_asyncapi_ws_channel_has_every_frame_with_its_replies():
    document = build_asyncapi()
    channel = document["channels"]["ws"]
    assert channel["address"] == "/ws"
    (server_ref,) = channel["servers"]
    assert _resolve(document, server_ref["$ref"])["protocol"] == "ws"
    messages = channel["messages"]
    for name in (*CLIENT_FRAMES, "ping"):
        assert f"ws_client_{name}" in messages, name
        operation = document["operations"][f"ws_{name}"]
        assert operation["action"] == "receive"
        replies = {ref["$ref"].rsplit("/", 1)[1] for ref in operation["reply"]["messages"]}
        assert replies == ({"ws_pong"} if name == "ping" else {f"ws_{name}_ack", "ws_error"}), name
        if name != "ping":  # each frame's ack is documented with what it carries
            ack = document["components"]["messages"][f"ws_{name}_ack"]["payload"]
            assert ack["properties"]["data"]["$ref"].endswith("/Go" + CLIENT_FRAMES[name].answer.__name__), name
    for name in (*(spec.name for spec in FRAMES.values()), "connected", "pong", "ack", "error"):
        assert f"ws_{name}" in messages, name
    for spec in FRAMES.values():
        payload = document["components"]["messages"][f"ws_{spec.name}"]["payload"]
        assert payload["properties"]["type"] == {"const": spec.name}
        assert payload["properties"]["data"]["$ref"].endswith("/Go" + spec.schema.__name__)
    # what an older client of Socket.IO saw is still there, on its own server
    assert all(
        c["servers"] == [{"$ref": "#/servers/local"}] for name, c in document["channels"].items() if name != "ws"
    )


@pytest.mark.parametrize("which", ["asyncapi", "gochat", "whatschat"])
def test_every_reference_resolves_and_every_schema_is_a_json_schema(config, which):
    document = build_asyncapi() if which == "asyncapi" else build_openapi(create_app(config), *(
        [GOCHAT] if which == "gochat" else []
    ))  # fmt: skip
    for ref in _refs(document):
        assert _resolve(document, ref) is not None, ref
    schemas = list(document["components"]["schemas"].values())
    if which == "asyncapi":
        schemas += [message["payload"] for message in document["components"]["messages"].values()]
    for schema in schemas:
        Draft202012Validator.check_schema(schema)


@dataclass
class OpenApiContract:
    """Validates each answer of the `/api` door against the response schema `/api/openapi.json` gives it."""

    document: dict[str, Any]
    checked: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:gochat-openapi", resource)
        # literal segments before `{...}` ones: `/users/profile` is not `/users/{user_id}`
        self.templates = sorted(self.document["paths"], key=lambda path: (path.count("{"), path))

    def template(self, path: str) -> str:
        for template in self.templates:
            if re.fullmatch(re.sub(r"{\w+}", "[^/]+", template), path):
                return template
        raise AssertionError(f"{path} is not in /api/openapi.json")

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        template = self.template(path.split("?")[0])
        responses = self.document["paths"][template][method.lower()]["responses"]
        key = str(status) if str(status) in responses else "default"
        pointer = "/".join(["", "paths", template.replace("/", "~1"), method.lower(), "responses", key])
        pointer += "/content/application~1json/schema"
        validator = Draft202012Validator({"$ref": "urn:gochat-openapi#" + quote(pointer)}, registry=self.registry)
        self.checked.append(f"{method} {template} {status}")
        for error in validator.iter_errors(body):
            where = "/".join(map(str, error.absolute_path)) or "(root)"
            self.mismatches.append(f"{method} {path} {status}: {where}: {error.message}")


@dataclass
class CheckedGoApi(GoApi):
    contract: OpenApiContract | None = None

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        status, body = await super().call(method, path, token, **kwargs)
        assert self.contract is not None
        self.contract.check(method, path, status, body)
        return status, body


def test_the_openapi_contract_catches_an_answer_that_breaks_the_document(config):
    contract = OpenApiContract(build_openapi(create_app(config), GOCHAT))
    contract.check("GET", "/users/profile", 200, {"code": 200, "message": "", "data": {"user_id": "u"}, "timestamp": 1})
    assert any("'name' is a required property" in m for m in contract.mismatches)
    contract.mismatches.clear()
    contract.check(
        "PUT", "/users/status", 200, {"code": 201, "message": "", "data": {"status": "away"}, "timestamp": 1}
    )
    contract.check("GET", "/users/u1", 404, {"code": 404, "message": "Not found", "data": {}, "timestamp": 1})
    assert len(contract.mismatches) == 2 and contract.checked[-1] == "GET /users/{user_id} 404"


async def test_answers_of_the_gochat_door_match_its_document(server):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/api/openapi.json") as response:
            contract = OpenApiContract(await response.json())
        go = CheckedGoApi(session, server.url, contract)
        alice, bob, carol = await go_register(go, "Alice"), await go_register(go, "Bob"), await go_register(go)
        a, b = alice.token, bob.token
        again = {"name": "Again", "email": alice.email, "password": "Passw0rd"}
        assert (await go.post("/auth/register", json=again))[0] == 409
        assert (await go.post("/auth/register", json={**again, "email": "not an email"}))[0] == 422
        status, body = await go.post("/auth/login", json={"email": alice.email, "password": "Wr0ngpass"})
        assert status == 401 and body["data"]["error"] == "invalid_credentials"
        assert (await go.post("/auth/refresh", json={"refresh_token": alice.refresh_token}))[0] == 200
        assert (await go.get("/users/profile", token=a))[0] == 200
        assert (await go.get("/users/profile"))[0] == 401
        assert (await go.put("/users/profile", token=a, json={"bio": "hi", "name": "Alice A"}))[0] == 200
        assert (await go.put("/users/status", token=a, json={"status": "dnd"}))[0] == 200
        assert (await go.get("/users/search", token=a, params={"query": "bob"}))[0] == 200
        assert (await go.get(f"/users/{bob.id}", token=a))[0] == 200
        assert (await go.get("/users/nobody-at-all", token=a))[0] == 404
        status, body = await go.post("/chats/private", token=a, json={"participant_id": bob.id})
        assert status == 201
        chat = body["data"]["chat_id"]
        status, body = await go.post("/chats/private", token=a, json={"participant_id": bob.id})
        assert status == 409 and body["data"]["chat_id"] == chat
        status, body = await go.post(f"/chats/{chat}/messages", token=a, json={"content": "hello", "client_id": "c1"})
        assert status == 201
        message = body["data"]["message_id"]
        assert (await go.post(f"/chats/{chat}/messages", token=a, json={"content": "hello", "client_id": "c1"}))[
            0
        ] == 200
        reply = {"content": "hi", "reply_to": message}
        assert (await go.post(f"/chats/{chat}/messages", token=b, json=reply))[0] == 201
        assert (await go.post(f"/chats/{chat}/messages", token=b, json={"content": ""}))[0] == 422
        assert (await go.get("/chats", token=a))[0] == 200
        assert (await go.get("/chats", token=a, params={"sort": "size:desc"}))[0] == 422
        assert (await go.get(f"/chats/{chat}", token=b))[0] == 200
        assert (await go.get(f"/chats/{chat}", token=carol.token))[0] == 404
        assert (await go.get(f"/chats/{chat}/messages", token=b, params={"sort": "created_at:asc"}))[0] == 200
        assert (await go.get(f"/chats/{chat}/messages/search", token=b, params={"query": "HELL"}))[0] == 200
        assert (await go.put(f"/chats/{chat}/mark-read", token=b, json={"message_id": message}))[0] == 200
        assert (await go.put(f"/chats/{chat}/mark-read", token=b))[0] == 200
        assert (await go.put(f"/messages/{message}", token=b, json={"content": "mine now"}))[0] == 403
        assert (await go.put(f"/messages/{message}", token=a, json={"content": "edited"}))[0] == 200
        assert (await go.delete(f"/messages/{message}", token=a))[0] == 200
        assert (await go.delete(f"/messages/{message}", token=a))[0] == 404
        too_long = {"name": "G", "member_ids": [bob.id, "x" * 65]}  # messages keyed by item index: once a 500
        assert (await go.post("/groups", token=a, json=too_long))[0] == 422
        status, body = await go.post("/groups", token=a, json={"name": "G", "member_ids": [bob.id]})
        assert status == 201
        group = body["data"]["group_id"]
        assert (await go.get(f"/groups/{group}", token=b))[0] == 200
        assert (await go.put(f"/groups/{group}", token=a, json={"description": "d"}))[0] == 200
        assert (await go.post(f"/groups/{group}/members", token=a, json={"member_ids": [carol.id]}))[0] == 201
        assert (await go.delete(f"/groups/{group}/members/{carol.id}", token=a))[0] == 200
        assert (await go.post(f"/groups/{group}/leave", token=b))[0] == 200
        form = aiohttp.FormData()
        form.add_field("file", b"some bytes", filename="notes.txt", content_type="text/plain")
        assert (await go.post("/uploads", token=a, data=form))[0] == 201
        assert (await go.delete(f"/groups/{group}", token=a))[0] == 200
        assert (await go.post("/auth/logout", token=b))[0] == 200
        assert (await go.get("/users/profile", token=b))[0] == 401
    assert not contract.mismatches, "answers that break /api/openapi.json:\n" + "\n".join(contract.mismatches)
    assert len(contract.checked) >= 40


def _frame_problems(client: WsClient) -> list[str]:
    found = []
    for frame in client.frames:
        for problem in problems(f"/components/messages/ws_{frame.get('type')}/payload", frame):
            found.append(f"{frame.get('type')}: {problem}: {str(frame)[:300]}")
    return found


async def test_frames_on_a_live_ws_connection_match_the_asyncapi_document(server):
    async with aiohttp.ClientSession() as session:
        go = GoApi(session, server.url)
        alice, bob = await go_register(go, "Alice"), await go_register(go, "Bob")
        _, body = await go.post("/chats/private", token=alice.token, json={"participant_id": bob.id})
        chat = body["data"]["chat_id"]
        async with (
            ws_connect(session, server.url, alice.token) as alice_ws,
            ws_connect(session, server.url, bob.token) as bob_ws,
        ):
            sent = (await alice_ws.request("send_message", {"chat_id": chat, "content": "hello"}))["data"]
            await bob_ws.wait_for("new_message")
            await alice_ws.wait_for("message_status")  # delivered to Bob's connection
            assert (await bob_ws.request("mark_read", {"chat_id": chat}))["type"] == "ack"
            await alice_ws.wait_for("message_status", 2)  # read
            assert (await bob_ws.request("typing_start", {"chat_id": chat}))["type"] == "ack"
            await bob_ws.ws.send_json({"type": "typing_stop", "data": {"chat_id": chat}})
            await alice_ws.wait_for("typing_start")
            await alice_ws.wait_for("typing_stop")
            assert (await bob_ws.request("user_status", {"status": "away"}))["type"] == "ack"
            await alice_ws.wait_for("user_status")
            assert (await alice_ws.request("ping"))["type"] == "pong"
            assert (await alice_ws.request("send_message", {"chat_id": chat}))["data"]["error"] == "validation_failed"
            assert (await alice_ws.request("no_such_frame"))["type"] == "error"
            await alice_ws.ws.send_str("{not json")
            await alice_ws.wait_for("error", 3)
            await go.put(f"/messages/{sent['message_id']}", token=alice.token, json={"content": "edited"})
            await bob_ws.wait_for("message_edited")
            await go.delete(f"/messages/{sent['message_id']}", token=alice.token)
            await bob_ws.wait_for("message_deleted")
            await alice_ws.request("typing_start", {"chat_id": chat})  # so that a request ends Alice's log
        seen = {frame["type"] for frame in alice_ws.frames + bob_ws.frames}
    wanted = {"connected", "new_message", "ack", "error", "pong", "message_status", "typing_start", "typing_stop"}
    assert wanted | {"user_status", "message_edited", "message_deleted"} <= seen
    assert not _frame_problems(alice_ws) and not _frame_problems(bob_ws)


def test_the_ws_document_takes_what_clients_send_and_refuses_what_servers_must_not():
    good = {"type": "send_message", "request_id": 7, "data": {"chat_id": "c", "content": "hi"}}
    assert not problems("/components/messages/ws_client_send_message/payload", good)
    assert problems("/components/messages/ws_client_send_message/payload", {**good, "request_id": True})
    assert problems("/components/messages/ws_ack/payload", {"type": "ack", "data": {}})  # no request_id
    assert problems("/components/messages/ws_typing_start/payload", {"type": "typing_start", "data": {"chat_id": "c"}})
    error = {"type": "error", "data": {"code": 422, "error": "validation_failed", "message": "Invalid"}}
    assert not problems("/components/messages/ws_error/payload", error)


async def test_the_ws_fuzzer_at_a_tiny_size(server):
    """`make fuzz` runs it at full size against a server process; here, a few frames keep it working."""
    async with aiohttp.ClientSession() as session:
        go = GoApi(session, server.url)
        fuzzer, friend = await go_register(go), await go_register(go)
    report = await fuzz_ws(server.url, fuzzer.token, friend.id, count=15, seed=5)
    assert report.ok, report.summary()
    assert report.cases >= 10 and report.frames >= 20 and report.conforming > report.cases
