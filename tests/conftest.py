"""Test harness: the production app on a free loopback port, driven by real clients.

`server` builds the app with `create_app` exactly as `python -m server serve`
does, listens on 127.0.0.1 with an OS-chosen port, and tears it down after the
test. `api` is an aiohttp client bound to it; `sockets` connects real
`socketio.AsyncClient`s and disconnects them at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from pymongo import MongoClient

from handlers.sio.events import EVENTS
from models.events import Event
from server.app import create_app
from server.config import Config, load_config
from server.keys import SERVICES, SIO
from tests.api_contract import EventContract, ack_problems

_names = count(1)


def require_tool(name: str) -> str:
    """The path of an external tool; a skip locally, a failure under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must not skip)")
        pytest.skip(message)
    return path


BACKENDS = ("sqlite", "ferretdb")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked `backends` runs each test that builds on `config` once per store backend.

    `pytestmark = pytest.mark.backends` opts a module in: `config` (and so `server`, `api`,
    `sockets`) is parametrized indirectly over `BACKENDS`, ids `sqlite` and `ferretdb`, so the
    same assertions hold the app to the same behaviour on SQLite and on a real MongoDB
    wire-protocol server. A test that must stay on SQLite does not request `config`.
    """
    if metafunc.definition.get_closest_marker("backends") and "config" in metafunc.fixturenames:
        metafunc.parametrize("config", BACKENDS, indirect=True, ids=BACKENDS)


@pytest.fixture
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    """Settings for tests: a private data folder, fast bcrypt, a short auth deadline.

    SQLite unless a `backends` module asks for `ferretdb`: then `database.backend: mongodb`
    on this process's FerretDB with a database of the test's own (so tests never see each
    other's rows), dropped afterwards so the server's SQLite folder does not grow all session.
    """
    base = load_config(None, {}).replace(
        data_dir=str(tmp_path / "data"),
        auth={"bcrypt_rounds": 4},
        server={"host": "127.0.0.1"},
        logging={"level": "WARNING"},
    )
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield base
        return
    assert backend == "ferretdb", backend
    from tests.ferretdb_support import shared_url  # here: it imports redis_support, which imports this module

    url = shared_url()
    database = f"whatschat_{uuid.uuid4().hex}"
    yield base.replace(database={"backend": "mongodb", "url": url + database})
    with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(database)


@dataclass
class Server:
    app: web.Application
    url: str
    runner: web.AppRunner

    @property
    def api(self) -> str:
        return self.url + "/api/v1"


def check_emits_against_asyncapi(app: web.Application) -> EventContract:
    """Validate every event the server emits; mismatches fail the test when the server stops."""
    sio = app[SIO]
    contract = EventContract()
    emit = sio.emit

    async def checked_emit(event: str, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        contract.check(event, data)
        return await emit(event, data, *args, **kwargs)

    sio.emit = checked_emit  # type: ignore[method-assign]

    async def report(_: web.Application) -> None:
        assert not contract.mismatches, "events that break the AsyncAPI document:\n" + "\n".join(contract.mismatches)

    app.on_cleanup.append(report)
    return contract


def check_events_are_registered(app: web.Application) -> list[str]:
    """Every event a service hands the notifier is a registered `Event`, never a bare name; checked at call time.

    The registry refuses a name it does not know; this also refuses a plain string
    that happens to match one, so the domain names its events through `Event` only.
    """
    strays: list[str] = []

    async def watch(_: web.Application) -> None:  # on start-up, once the services exist
        notifier = app[SERVICES].messages.notifier  # the one every service holds
        for method in ("to_users", "to_chat"):
            send = getattr(notifier, method)

            async def checked(target: Any, event: Any, view: Any, *args: Any, _send: Any = send, **kwargs: Any) -> Any:
                if not isinstance(event, Event) or event not in EVENTS:
                    strays.append(repr(event))
                return await _send(target, event, view, *args, **kwargs)

            setattr(notifier, method, checked)

    async def report(_: web.Application) -> None:
        assert not strays, "events handed to the notifier without a registered `Event`: " + ", ".join(strays)

    app.on_startup.append(watch)
    app.on_cleanup.append(report)
    return strays


async def start_server(config: Config) -> Server:
    app = create_app(config)
    check_emits_against_asyncapi(app)
    check_events_are_registered(app)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return Server(app, f"http://127.0.0.1:{port}", runner)


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    srv = await start_server(config)
    yield srv
    await srv.runner.cleanup()


@dataclass
class Api:
    """A thin REST client: `await api.post("/auth/login", json=..., token=...)`."""

    session: aiohttp.ClientSession
    base: str

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("DELETE", path, **kwargs)


@pytest.fixture
async def api(server: Server) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.api)


@dataclass
class Account:
    id: str
    username: str
    email: str
    password: str
    token: str
    refresh_token: str
    user: dict[str, Any] = field(default_factory=dict)


async def register(api: Api, name: str | None = None, password: str = "Passw0rd") -> Account:
    """A fresh user with a unique name; asserts the 201."""
    name = name or f"user{next(_names)}_{os.getpid() % 1000}"
    status, body = await api.post(
        "/auth/register", json={"username": name, "email": f"{name}@example.com", "password": password}
    )
    assert status == 201, body
    data = body["data"]
    return Account(
        data["user"]["id"], name, f"{name}@example.com", password, data["token"], data["refreshToken"], data["user"]
    )


@pytest.fixture
def make_user(api: Api) -> Callable[..., Any]:
    async def make(name: str | None = None, password: str = "Passw0rd") -> Account:
        return await register(api, name, password)

    return make


class Recorder:
    """Collects the events a socket receives, and waits for them without sleeping blindly."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Condition()

    async def record(self, event: str, data: Any) -> None:
        async with self._changed:
            self.events.append((event, data))
            self._changed.notify_all()

    def of(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def wait_for(self, event: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.of(event)) >= count), timeout)
        return self.of(event)


@dataclass
class Socket:
    client: socketio.AsyncClient
    namespace: str
    seen: Recorder

    async def call(self, event: str, data: Any = None, timeout: float = 5.0) -> Any:
        """Emit with an ack and return what the server answered (checked against the AsyncAPI document)."""
        answer = await self.client.call(event, data, namespace=self.namespace, timeout=timeout)
        mismatches = ack_problems(event, answer)
        assert not mismatches, f"the {event} ack breaks the AsyncAPI document: {mismatches}"
        return answer

    async def emit(self, event: str, data: Any = None) -> None:
        await self.client.emit(event, data, namespace=self.namespace)


# what every test socket records without being asked (the rest: `events=`)
SERVER_EVENTS = (Event.AUTHENTICATED, Event.UNAUTHORIZED, Event.ERROR, Event.USER_STATUS_CHANGED)


@pytest.fixture
async def sockets(server: Server) -> AsyncIterator[Callable[..., Any]]:
    """`await sockets(token=..., namespace="/", auth=True, query=False)` -> a connected `Socket`."""
    clients: list[socketio.AsyncClient] = []

    async def connect(
        token: str | None = None,
        namespace: str = "/",
        via: str = "auth",
        transports: list[str] | None = None,
        events: tuple[str, ...] = (),
    ) -> Socket:
        client = socketio.AsyncClient(reconnection=False)
        seen = Recorder()
        for name in (*SERVER_EVENTS, *events, "disconnect"):
            client.on(name, recorder_for(seen, name), namespace=namespace)
        url = server.url
        auth = None
        if token is not None and via == "auth":
            auth = {"token": token}
        elif token is not None and via == "query":
            url += f"?token={token}"
        await client.connect(
            url, namespaces=[namespace], auth=auth, transports=transports or ["websocket"], wait_timeout=5
        )
        clients.append(client)
        return Socket(client, namespace, seen)

    yield connect
    for client in clients:
        if client.connected:
            await client.disconnect()


def recorder_for(seen: Recorder, name: str) -> Callable[..., Any]:
    async def handler(*args: Any) -> None:
        await seen.record(name, args[0] if args else None)

    return handler
