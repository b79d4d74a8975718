"""Two people chat in the web client, each in a Chromium browser context of their own.

Everything goes through the page as a person would use it (labels, buttons, keys);
the server is the real app. Every wait is bounded; nothing asserts on timings.
The run writes the chat screen to build/web-client.png (ignored by git: a test never
changes a tracked file) and prints its figures; `make screenshot` points it at
docs/web-client.png (`WHATSCHAT_TEST_SCREENSHOT`) to refresh the README's picture on purpose.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser.conftest import playwright_api
from tests.conftest import Api, Server, register

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / os.environ.get("WHATSCHAT_TEST_SCREENSHOT", "build/web-client.png")
WAIT_MS = 10_000


def png(width: int = 160, height: int = 100) -> bytes:
    """A small valid PNG (a green-blue gradient), made here."""
    pixel = lambda x, y: (20, 90 + x, 220 - 2 * y)  # noqa: E731
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in pixel(x, y)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# In the page: a second, long-polling-only socket.io-client from the same bundle, authenticated, one `sync`.
POLLING_ONLY = """async (token) => {
  const { io } = await import("/app/vendor/socket.io.esm.min.js");
  const socket = io(location.origin, { transports: ["polling"], auth: { token }, forceNew: true, reconnection: false });
  try {
    const user = await new Promise((ok, fail) => {
      socket.on("authenticated", (event) => ok(event.user));
      socket.on("connect_error", fail);
      setTimeout(() => fail(new Error("not authenticated within 8 s")), 8000);
    });
    const ack = await socket.timeout(5000).emitWithAck("sync", { after: new Date(Date.now() - 3600e3).toISOString() });
    return { user: user.username, transport: socket.io.engine.transport.name, success: ack.success,
             messages: ack.data.messages.length };
  } finally {
    socket.close();
  }
}"""


class Person:
    """One browser context and its page, with what the page did recorded."""

    def __init__(self, name: str, context: Any, page: Any, origin: str) -> None:
        self.name = name
        self.context = context
        self.page = page
        self.origin = origin
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.foreign: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.refreshes = 0
        self.ws_extensions: list[str] = []
        self.ws_opened = 0
        self.polling_encodings: set[str] = set()
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", self._console)
        page.on("request", self._request)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _request(self, request: Any) -> None:
        if not (request.url.startswith(self.origin) or request.url.startswith(("data:", "blob:"))):
            self.foreign.append(request.url)

    def _response(self, response: Any) -> None:
        if "/api/v1/" in response.url:
            self.statuses[response.status] += 1
            if response.url.endswith("/auth/refresh-token") and response.status == 200:
                self.refreshes += 1

    async def watch_websockets(self) -> None:
        """What Chromium negotiated on the Socket.IO WebSocket (compression) and sent on polling."""
        cdp = await self.context.new_cdp_session(self.page)
        await cdp.send("Network.enable")

        def handshake(event: dict[str, Any]) -> None:
            headers = {k.lower(): v for k, v in event["response"].get("headers", {}).items()}
            self.ws_opened += 1
            self.ws_extensions.append(headers.get("sec-websocket-extensions", ""))

        def response(event: dict[str, Any]) -> None:
            if "/socket.io/" in event["response"]["url"]:
                headers = {k.lower(): v for k, v in event["response"].get("headers", {}).items()}
                self.polling_encodings.add(headers.get("content-encoding", "identity"))

        cdp.on("Network.webSocketHandshakeResponseReceived", handshake)
        cdp.on("Network.responseReceived", response)

    def at(self, selector: str) -> Any:
        return self.page.locator(selector)

    def message(self, text: str) -> Any:
        return self.page.locator("#messages li.message", has_text=text)

    def chat(self, name: str) -> Any:
        return self.page.locator(f'#chat-list button[data-chat-name="{name}"]')

    async def alert(self, pattern: str) -> str:
        alert = self.page.locator("#alerts .alert", has_text=re.compile(pattern, re.I)).first
        await playwright_api().expect(alert).to_be_visible()
        text = await alert.inner_text()
        await alert.get_by_role("button", name="Dismiss").click()
        return text

    async def register(self, username: str, password: str) -> None:
        page = self.page
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Email").nth(1).fill(f"{username}@example.com")
        await page.get_by_label("Password", exact=True).nth(1).fill(password)
        await page.get_by_role("button", name="Create account").click()

    async def login(self, email: str, password: str) -> None:
        page = self.page
        await page.locator("#login-email").fill(email)
        await page.locator("#login-password").fill(password)
        await page.get_by_role("button", name="Log in").click()

    async def send(self, text: str) -> None:
        box = self.page.get_by_label("Message", exact=True)
        await box.fill(text)
        await box.press("Enter")

    async def token(self) -> str:
        saved = await self.page.evaluate("sessionStorage.getItem('whatschat.session')")
        return json.loads(saved)["token"]


class Steps:
    """Named steps with their durations, for the figures."""

    def __init__(self) -> None:
        self.done: list[tuple[str, float]] = []
        self._name = ""
        self._started = 0.0

    def __call__(self, name: str) -> Steps:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._started = time.monotonic()

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.done.append((self._name, round(time.monotonic() - self._started, 2)))


@pytest.mark.browser
@pytest.mark.timeout(90)
async def test_two_people_chat_call_and_catch_up_in_the_browser(web_server: Server, chromium: Any) -> None:
    pw = playwright_api()
    expect = pw.expect
    expect.set_options(timeout=WAIT_MS)
    origin = web_server.url
    step = Steps()
    people: list[Person] = []
    for name in ("alice", "bob"):
        context = await chromium.new_context(
            viewport={"width": 1180, "height": 760}, permissions=["camera", "microphone"], base_url=origin
        )
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        person = Person(name, context, page, origin)
        await person.watch_websockets()
        people.append(person)
    alice, bob = people

    with step("open the page"):
        for person in people:
            await person.page.goto("/")
            await expect(person.page).to_have_title("WhatsChat")
            await expect(person.page.get_by_role("heading", name="Register")).to_be_visible()

    with step("a refused registration is explained"):
        await bob.register("bob", "short")
        words = await bob.alert("password")
        assert "Validation failed" in words and "password" in words
        await expect(bob.at("#chat-screen")).to_be_hidden()

    with step("register both"):
        await bob.page.get_by_label("Password", exact=True).nth(1).fill("Passw0rd")
        await bob.page.get_by_role("button", name="Create account").click()
        await alice.register("alice", "Passw0rd")
        for person in people:
            await expect(person.at("#my-name")).to_have_text(person.name)
            await expect(person.at("#connection")).to_have_attribute("data-state", "online")

    with step("find each other and open a private chat"):
        await alice.page.get_by_label("Search by name or email").fill("bo")
        await alice.page.get_by_role("button", name="Message bob").click()
        await expect(alice.at("#chat-title")).to_have_text("bob")
        await expect(alice.at("#chat-presence")).to_have_attribute("data-presence", "online")
        await expect(bob.chat("alice")).to_be_visible()  # chat_created reached bob

    with step("a message: delivered, unread, then read"):
        await alice.send("Hello Bob")
        await expect(bob.chat("alice").locator(".badge")).to_have_text("1")
        await expect(bob.chat("alice")).to_contain_text("Hello Bob")
        await expect(alice.message("Hello Bob").locator(".ticks")).to_have_attribute("data-status", "delivered")
        await bob.chat("alice").click()
        await expect(bob.message("Hello Bob")).to_be_visible()
        await expect(bob.chat("alice").locator(".badge")).to_have_count(0)
        await expect(alice.message("Hello Bob").locator(".ticks")).to_have_attribute("data-status", "read")

    with step("typing indicator, and an answer read at once"):
        box = bob.page.get_by_label("Message", exact=True)
        await box.press_sequentially("Hi Alice", delay=30)
        await expect(alice.at("#typing")).to_have_text("bob is typing…")
        await expect(alice.chat("bob")).to_contain_text("typing…")
        await box.press("Enter")
        await expect(alice.message("Hi Alice")).to_be_visible()
        await expect(alice.at("#typing")).to_have_text("")
        await expect(bob.message("Hi Alice").locator(".ticks")).to_have_attribute("data-status", "read")

    with step("reply, edit, delete"):
        await alice.message("Hi Alice").get_by_role("button", name="Reply to bob").click()
        await expect(alice.at("#composer-context")).to_contain_text("Replying to bob")
        await alice.send("Nice to see you here")
        reply = bob.message("Nice to see you here")
        await expect(reply.locator("blockquote")).to_have_text("bob: Hi Alice")
        await alice.message("Hello Bob").get_by_role("button", name="Edit").click()
        await alice.send("Hello Bob, welcome!")
        await expect(bob.message("Hello Bob, welcome!")).to_contain_text("(edited)")
        await alice.send("A typo I regret")
        await expect(bob.message("A typo I regret")).to_be_visible()
        doomed = alice.message("A typo I regret")
        await doomed.get_by_role("button", name="Delete").click()
        await doomed.get_by_role("button", name="Yes, delete").click()
        await expect(bob.at("#messages li.message .deleted")).to_have_text("This message was deleted")
        await expect(bob.message("A typo I regret")).to_have_count(0)

    with step("upload an image and a file"):
        await alice.at("#attach").set_input_files(
            files=[{"name": "gradient.png", "mimeType": "image/png", "buffer": png()}]
        )
        image = bob.at('#messages img[alt="gradient.png"]')
        await expect(image).to_be_visible()
        await bob.page.wait_for_function(
            "() => { const i = document.querySelector('#messages img[alt=\"gradient.png\"]');"
            " return i && i.complete && i.naturalWidth === 160; }"
        )
        await alice.at("#attach").set_input_files(
            files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"bring snacks\n"}]
        )
        await expect(bob.at("#messages a.file")).to_contain_text("notes.txt")
        await alice.send("Photo and notes sent")
        await expect(bob.message("Photo and notes sent")).to_be_visible()
        await expect(alice.message("Photo and notes sent").locator(".ticks")).to_have_attribute("data-status", "read")

    with step("long-polling from the browser (the client's fallback transport)"):
        polled = await alice.page.evaluate(POLLING_ONLY, await alice.token())
        assert polled == {"user": "alice", "transport": "polling", "success": True, "messages": 7}, polled

    with step("own status: busy, invisible, online"):
        for status, seen in (("busy", "busy"), ("invisible", "offline"), ("online", "online")):
            await bob.page.get_by_label("My status").select_option(status)
            await expect(alice.at("#chat-presence")).to_have_attribute("data-presence", seen)

    with step("a group: unread count and scroll-back through history"):
        async with aiohttp.ClientSession() as http:
            api = Api(http, web_server.api)
            carol = await register(api, "carol")
            _, found = await api.get("/users?search=alice", token=carol.token)
            alice_id = found["data"]["users"][0]["id"]
            _, found = await api.get("/users?search=bob", token=carol.token)
            bob_id = found["data"]["users"][0]["id"]
            status, group = await api.post(
                "/groups", token=carol.token, json={"name": "Team", "participants": [alice_id, bob_id]}
            )
            assert status == 201, group
            for n in range(1, 46):
                status, sent = await api.post(
                    "/messages", token=carol.token, json={"chatId": group["data"]["id"], "content": f"seed {n}"}
                )
                assert status == 201, sent
        await expect(alice.chat("Team").locator(".badge")).to_have_text("45")
        await alice.chat("Team").click()
        await expect(alice.message("seed 45")).to_be_visible()
        await expect(alice.at("#messages li.message")).to_have_count(30)
        first = alice.page.locator("#messages li.message p.text", has_text=re.compile(r"^seed 1$"))
        await expect(first).to_have_count(0)
        await alice.page.get_by_role("button", name="Load older messages").click()
        await expect(alice.at("#messages li.message")).to_have_count(45)
        await expect(first).to_be_visible()
        await expect(alice.at("#history-start")).to_be_visible()
        await expect(alice.chat("Team").locator(".badge")).to_have_count(0)

    with step("bob goes offline; alice sees it; both write meanwhile"):
        await alice.chat("bob").click()
        await bob.context.set_offline(True)
        await expect(bob.at("#connection")).to_have_attribute("data-state", "offline")
        await expect(alice.at("#chat-presence")).to_have_attribute("data-presence", "offline")
        await expect(alice.at("#chat-presence")).to_contain_text("last seen")
        await expect(alice.chat("bob").locator(".dot")).to_have_attribute("data-presence", "offline")
        await alice.send("Sent while you were away")
        await expect(alice.message("Sent while you were away").locator(".ticks")).to_have_attribute(
            "data-status", "sent"
        )
        await bob.send("Written offline")
        await expect(bob.message("Written offline")).to_have_attribute("data-status", "pending")
        await expect(bob.message("Sent while you were away")).to_have_count(0)

    with step("bob reconnects by himself and catches up"):
        await bob.context.set_offline(False)
        await expect(bob.at("#connection")).to_have_attribute("data-state", "online")
        await expect(bob.message("Sent while you were away")).to_be_visible()  # through sync
        await expect(bob.message("Written offline").locator(".ticks")).to_have_attribute("data-status", "read")
        await expect(alice.message("Written offline")).to_be_visible()  # the outbox went out
        await expect(alice.at("#chat-presence")).to_have_attribute("data-presence", "online")
        await expect(alice.message("Sent while you were away").locator(".ticks")).to_have_attribute(
            "data-status", "read"
        )
        await expect(bob.message("Written offline")).to_have_count(1)

    with step("screenshot of the chat screen"):
        await expect(bob.message("Written offline").locator(".ticks")).to_have_attribute("data-status", "read")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await bob.page.screenshot(path=str(SCREENSHOT))

    with step("an audio call, rejected"):
        await alice.page.get_by_role("button", name="Audio call").click()
        await expect(alice.at("#call")).to_have_attribute("data-call-state", "ringing")
        await expect(bob.at("#call")).to_have_attribute("data-call-state", "incoming")
        await expect(bob.at("#call-state")).to_have_text("alice is calling (audio)")
        await bob.page.get_by_role("button", name="Reject").click()
        await expect(alice.at("#call")).to_have_attribute("data-call-state", "ended")
        await expect(alice.at("#call-state")).to_have_text("Call declined")

    with step("a video call: connected with media both ways, ended on both sides"):
        await alice.page.get_by_role("button", name="Video call").click()
        await expect(bob.at("#call")).to_have_attribute("data-call-state", "incoming")
        await bob.page.get_by_role("button", name="Answer").click()
        for person in people:
            await expect(person.at("#call")).to_have_attribute("data-call-state", "connected")
            await expect(person.at("#call-state")).to_have_text("Connected")
            # frames from the other side's fake camera arrive
            await person.page.wait_for_function(
                "() => { const v = document.getElementById('remote-video');"
                " return v.videoWidth > 0 && v.currentTime > 0; }"
            )
        await bob.page.get_by_role("button", name="End call").click()
        for person in people:
            await expect(person.at("#call")).to_have_attribute("data-call-state", "ended")
            await expect(person.at("#call-state")).to_contain_text("Call ended")
            released = await person.page.evaluate(
                "['local-video', 'remote-video'].every((id) => document.getElementById(id).srcObject === null)"
            )
            assert released, f"{person.name} still holds media after the call"
        async with aiohttp.ClientSession() as http:
            _, answer = await Api(http, web_server.api).get("/calls", token=await alice.token())
        calls = [(c["type"], c["status"]) for c in answer["data"]["calls"]]
        assert calls == [("video", "completed"), ("audio", "rejected")]

    with step("the access token was refreshed before it expired"):
        for person in people:  # the token lives 15 s: a refresh is due 12 s after the last one
            for _ in range(160):
                if person.refreshes:
                    break
                await asyncio.sleep(0.1)
            assert person.refreshes >= 1, f"{person.name}'s page never refreshed its token"
            assert not person.statuses[401], f"{person.name}'s page got a 401: its token ran out"
        await alice.page.get_by_label("Search by name or email").fill("carol")
        await expect(alice.page.get_by_role("button", name="Message carol")).to_be_visible()
        await alice.page.get_by_label("Search by name or email").fill("")

    with step("log out, a wrong password explained, log in again"):
        await alice.page.get_by_role("button", name="Log out").click()
        await expect(alice.page.get_by_role("heading", name="Log in")).to_be_visible()
        await alice.alert("logged out")
        await alice.login("alice@example.com", "Wrong0ne")
        assert "password" in (await alice.alert("password")).lower()
        await alice.login("alice@example.com", "Passw0rd")
        await expect(alice.at("#connection")).to_have_attribute("data-state", "online")
        await expect(alice.chat("bob")).to_contain_text("Written offline")
        await expect(alice.chat("Team")).to_be_visible()

    for person in people:
        await person.context.close()

    figures = {
        "steps": step.done,
        "refreshes": {p.name: p.refreshes for p in people},
        "websocketsOpened": {p.name: p.ws_opened for p in people},
        "websocketExtensions": sorted({e for p in people for e in p.ws_extensions}),
        "pollingEncodings": sorted({e for p in people for e in p.polling_encodings}),
        "apiStatuses": {p.name: dict(sorted(p.statuses.items())) for p in people},
        "consoleErrors": {p.name: p.console_errors for p in people},
    }
    print("\nweb client scenario:", json.dumps(figures, ensure_ascii=False))
    for person in people:
        assert not person.page_errors, f"{person.name}'s page threw: {person.page_errors}"
        assert not person.foreign, f"{person.name}'s page asked other hosts: {person.foreign}"
        policy = [e for e in person.console_errors if "Content Security Policy" in e]
        assert not policy, f"{person.name}'s page broke its own policy: {policy}"
    assert len(step.done) == 18
    assert all(person.ws_opened >= 1 for person in people)
    assert bob.ws_opened >= 2  # his socket came back by itself
