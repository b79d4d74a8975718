"""The published documents: valid, complete, served, and enforced on what the server sends."""

from __future__ import annotations

import re

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from handlers.apispec import UndocumentedError, build_asyncapi, build_openapi
from handlers.sio.events import EVENTS
from handlers.sio.namespaces import namespace_classes
from schemas.events import ACK_DATA
from server.app import create_app
from server.keys import SIO
from tests.api_contract import EventContract, ack_problems, event_problems
from tests.chat_support import connect, private_chat


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
