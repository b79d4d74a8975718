"""The history benchmark's parts on a small history: the seeder's rows and the measuring client's checks.

Nothing here looks at how fast anything is: `bench.seed` must write what the
server would have written, and `measure_history` must get (and check) the right
pages from a real server on that database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bench.seed import HistorySeed, seed_history
from models.clock import id_time
from server.config import Config
from server.loadtest.history import KINDS, WrongAnswer, measure_history
from tests.chat_support import MESSAGE_KEYS
from tests.conftest import Api, Server, start_server

COUNT = 3_000


@pytest.fixture
async def seeded(config: Config) -> HistorySeed:
    return await seed_history(Path(config.data_dir), COUNT, search_matches=40, progress=False)


@pytest.fixture
async def seeded_server(seeded: HistorySeed, config: Config) -> AsyncIterator[Server]:
    srv = await start_server(config)
    yield srv
    await srv.runner.cleanup()


@pytest.fixture
async def api(seeded_server: Server) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, seeded_server.api)


async def _login(api: Api, seeded: HistorySeed) -> str:
    status, body = await api.post("/auth/login", json={"email": seeded.email, "password": seeded.password})
    assert status == 200, body
    return body["data"]["token"]


async def test_the_seeded_history_is_what_the_server_would_have_stored(api: Api, seeded: HistorySeed):
    token = await _login(api, seeded)
    status, body = await api.get(f"/messages/{seeded.chat_id}", token=token, params={"limit": "100"})
    assert status == 200, body
    page = body["data"]
    assert page["pagination"]["total"] == COUNT
    newest = page["messages"]
    assert len(newest) == 100
    assert [m["id"] for m in newest] == sorted((m["id"] for m in newest), reverse=True)
    for message in newest:
        assert set(message) == MESSAGE_KEYS
        assert message["createdAt"] == message["updatedAt"] == id_time(message["id"])
        assert message["senderId"] in (seeded.user_id, seeded.other_user_id) and message["sender"] is not None
        assert (message["type"], message["deleted"], message["editedAt"], message["status"]) == (
            "text",
            False,
            None,
            "read",
        )
        assert message["content"].strip()
    status, body = await api.get("/chats", token=token)
    assert status == 200, body
    (chat,) = body["data"]
    assert chat["lastMessage"]["id"] == newest[0]["id"]

    # the search term is in about as many messages as asked, in any case
    status, body = await api.get(f"/messages/{seeded.chat_id}", token=token, params={"search": "QUOKKA", "limit": 50})
    assert status == 200, body
    assert body["data"]["pagination"]["total"] == seeded.search_matches == 40
    assert all("quokka" in m["content"].lower() for m in body["data"]["messages"])

    # a message sent now comes after every seeded one
    status, body = await api.post("/messages", token=token, json={"chatId": seeded.chat_id, "content": "new one"})
    assert status == 201, body
    assert body["data"]["id"] > newest[0]["id"]


async def test_the_deep_cursor_is_about_ninety_percent_back(api: Api, seeded: HistorySeed):
    token = await _login(api, seeded)
    walked, cursor = 0, seeded.cursor_id
    while True:  # count the messages older than the cursor by paging back from it
        status, body = await api.get(
            f"/messages/{seeded.chat_id}", token=token, params={"before": cursor, "limit": 100}
        )
        assert status == 200, body
        batch = body["data"]["messages"]
        if not batch:
            break
        walked += len(batch)
        cursor = batch[-1]["id"]
    assert walked == COUNT // 10


async def test_measure_history_checks_and_times_every_kind(seeded_server: Server, seeded: HistorySeed):
    result = await measure_history(
        seeded_server.url,
        seeded.email,
        seeded.password,
        seeded.chat_id,
        seeded.cursor_id,
        seeded.search_term,
        requests=5,
        warmup=1,
    )
    assert set(result) == set(KINDS)
    for figures in result.values():
        assert set(figures) == {"count", "p50", "p95", "p99", "max"} and figures["count"] == 5
        assert 0 < figures["p50"] <= figures["p99"] <= figures["max"]


async def test_measure_history_refuses_a_short_page(seeded_server: Server, seeded: HistorySeed):
    oldest_cursor = "0" * 24  # nothing is older: the deep page comes back empty
    with pytest.raises(WrongAnswer, match="deep"):
        await measure_history(
            seeded_server.url, seeded.email, seeded.password, seeded.chat_id, oldest_cursor, "quokka", 1, 0
        )
    with pytest.raises(WrongAnswer, match="search"):
        await measure_history(
            seeded_server.url, seeded.email, seeded.password, seeded.chat_id, seeded.cursor_id, "no such words", 1, 0
        )
