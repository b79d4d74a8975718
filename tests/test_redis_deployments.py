"""Two deployments on one Redis (`redis.deployment`) see none of each other's events or state.

Three apps in this process share one real redis-server: `alpha`, and two processes of
`beta` on one data folder. An event `alpha` emits to a room of a `beta` user reaches nobody;
the same emit from beta's other process reaches the user's socket (so a leak would show).
Every key in Redis starts with its deployment's prefix, and the pub/sub channels are the
two names.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
import socketio
from redis.asyncio import Redis

from server.config import Config
from server.keys import SIO
from tests.conftest import Api, Recorder, recorder_for, register, start_server
from tests.redis_support import RedisServer

pytestmark = pytest.mark.redis  # starts a redis-server: `make check` leaves this module out


async def test_two_deployments_on_one_redis_keep_apart(tmp_path: Path, config: Config) -> None:
    with RedisServer(log=tmp_path / "redis.log") as redis:

        def deployment(name: str) -> Config:
            return config.replace(data_dir=str(tmp_path / name), redis={"url": redis.url, "deployment": name})

        alpha = await start_server(deployment("alpha"))
        beta = await start_server(deployment("beta"))
        beta_again = await start_server(deployment("beta"))  # a second process of the same deployment
        servers = (alpha, beta, beta_again)
        client = socketio.AsyncClient(reconnection=False)
        try:
            for srv in servers:  # each listens on its channel
                await asyncio.wait_for(srv.app[SIO].manager.subscribed.wait(), 10)
            async with aiohttp.ClientSession() as session:
                bob = await register(Api(session, beta.api))
            seen = Recorder()
            for name in ("authenticated", "user_status_changed"):
                client.on(name, recorder_for(seen, name))
            await client.connect(beta.url, auth={"token": bob.token}, transports=["websocket"], wait_timeout=5)
            await seen.wait_for("authenticated")

            room = f"user:{bob.id}"
            for srv, status in ((alpha, "away"), (beta_again, "busy"), (alpha, "away"), (beta_again, "online")):
                payload = {"userId": bob.id, "status": status, "lastSeen": None}
                await srv.app[SIO].emit("user_status_changed", payload, room=room)
            received = await seen.wait_for("user_status_changed", 2, timeout=10)
            await asyncio.sleep(0.3)  # what the other deployment sent before the last event would be here by now
            assert [event["status"] for event in seen.of("user_status_changed")] == ["busy", "online"], received

            direct = Redis.from_url(redis.url)
            try:
                keys = sorted(key.decode() for key in await direct.keys("*"))
                channels = sorted(channel.decode() for channel in await direct.pubsub_channels())
            finally:
                await direct.aclose()
        finally:
            await client.disconnect()
            for srv in servers:
                await srv.runner.cleanup()
    assert keys and all(key.startswith(("alpha:", "beta:")) for key in keys), keys
    assert any(key.startswith("alpha:") for key in keys) and any(key.startswith("beta:presence:") for key in keys)
    assert channels == ["alpha", "beta"], channels
