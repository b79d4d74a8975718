"""The whole app on `database.backend: mongodb`, over FerretDB 1.24: a real MongoDB wire-protocol server.

The app is built by `create_app` as production builds it, with nothing replaced: the
`config` fixture (tests/conftest.py), asked for `ferretdb`, points `database.url` at this
process's FerretDB with a database of the test's own. The suites marked `backends` run
every app test on it too; this one walks the paths where MongoDB's behaviour differs most
from SQLite's (unique indexes, operator objects, one-per-pair upserts, paging) in one story,
and checks it is the real driver on a real server that answers, not a stand-in.
"""

from __future__ import annotations

import pytest
from pymongo import AsyncMongoClient

from models.store.mongo import MongoStore
from server.config import Config
from server.keys import STORE
from tests.chat_support import history_page, private_chat, rest_send
from tests.conftest import register
from tests.rest_support import assert_error, running


@pytest.mark.parametrize("config", ["ferretdb"], indirect=True)
async def test_register_chat_send_and_page_over_rest_on_ferretdb(config: Config) -> None:
    assert config.database.backend == "mongodb"
    async with running(config) as (srv, api):
        store = srv.app[STORE]
        assert isinstance(store, MongoStore) and isinstance(store.client, AsyncMongoClient)
        assert "ferretdbVersion" in await store.db.command("buildInfo")  # FerretDB itself answers
        assert config.database.url.endswith("/" + store.db.name)  # the test's own database

        alice, bob = await register(api, "alice"), await register(api, "bob")
        status, body = await api.post(
            "/auth/register", json={"username": "ALICE", "email": "a2@example.com", "password": "Passw0rd"}
        )
        assert_error(status, body, 409, "RES_001")  # the username index, case-insensitive
        status, body = await api.post("/auth/login", json={"email": {"$ne": None}, "password": alice.password})
        assert_error(status, body, 422, "VAL_001")  # an object where a string belongs never reaches the store

        chat_id = await private_chat(api, alice, bob, statuses=(201,))
        assert await private_chat(api, bob, alice, statuses=(200,)) == chat_id  # one chat per pair
        sent = [(await rest_send(api, alice if n % 2 else bob, chat_id, f"m{n}"))["id"] for n in range(7)]
        repeat = await api.post(
            "/messages", token=alice.token, json={"chatId": chat_id, "content": "x", "clientId": "c"}
        )
        again = await api.post(
            "/messages", token=alice.token, json={"chatId": chat_id, "content": "y", "clientId": "c"}
        )
        assert (repeat[0], again[0]) == (201, 200) and again[1]["data"]["id"] == repeat[1]["data"]["id"]
        sent.append(repeat[1]["data"]["id"])

        data = await history_page(api, bob, chat_id, limit=3)
        assert [m["id"] for m in data["messages"]] == sent[:-4:-1]
        assert data["pagination"] == {"page": 1, "limit": 3, "total": 8, "pages": 3, "hasMore": True}
        data = await history_page(api, bob, chat_id, limit=3, page=3)
        assert [m["id"] for m in data["messages"]] == [sent[1], sent[0]]
        data = await history_page(api, bob, chat_id, limit=3, before=sent[4])
        assert [m["content"] for m in data["messages"]] == ["m3", "m2", "m1"]
        data = await history_page(api, bob, chat_id, limit=2, after=sent[4])
        assert [m["content"] for m in data["messages"]] == ["m6", "m5"]
        data = await history_page(api, bob, chat_id, search="M6")
        assert [m["id"] for m in data["messages"]] == [sent[6]]

        status, body = await api.get("/chats", token=bob.token)
        assert status == 200, body
        (listed,) = body["data"]
        assert listed["id"] == chat_id and listed["lastMessage"]["id"] == sent[-1]
        assert listed["unreadCount"] == 4  # alice's m1, m3, m5 and "x"
