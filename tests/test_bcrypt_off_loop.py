"""A login at a real bcrypt cost runs off the event loop: other requests and sockets go on meanwhile.

Proven by order, not by time: once the login is inside bcrypt, several /health
answers and a socket ack must all arrive before bcrypt returns. If the hash ran
on the loop, nothing else could be served until it finished.
"""

from __future__ import annotations

import asyncio

import pytest

from server.keys import SERVICES

ROUNDS = 13


@pytest.fixture
def config(config):
    return config.replace(auth={"bcrypt_rounds": ROUNDS})


async def test_login_does_not_stall_the_loop(api, server, make_user, sockets, monkeypatch):
    alice = await make_user()
    assert alice.user["role"] == "user"
    sock = await sockets(alice.token)
    await sock.seen.wait_for("authenticated")

    hasher = server.app[SERVICES].auth.hasher
    assert hasher.rounds == ROUNDS
    original = hasher.verify
    order: list[str] = []
    in_bcrypt = asyncio.Event()

    async def observed_verify(password: str, hashed: str | None) -> bool:
        in_bcrypt.set()
        try:
            return await original(password, hashed)
        finally:
            order.append("bcrypt done")

    monkeypatch.setattr(hasher, "verify", observed_verify)

    async def login() -> int:
        status, _ = await api.post("/auth/login", json={"email": alice.email, "password": alice.password})
        order.append("login")
        return status

    task = asyncio.create_task(login())
    await asyncio.wait_for(in_bcrypt.wait(), 30)
    for _ in range(5):
        status, body = await api.get("/health")
        assert status == 200 and body["data"]["status"] == "healthy"
        order.append("health")
    answer = await sock.call("update_status", {"status": "away"})
    assert answer["success"] is True
    order.append("ack")

    assert await asyncio.wait_for(task, 60) == 200
    assert order == ["health"] * 5 + ["ack", "bcrypt done", "login"]
