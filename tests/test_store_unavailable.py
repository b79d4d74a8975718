"""A database that cannot be opened is a one-line message on the command line, on every backend.

`StoreUnavailable` is what both backends raise for it (see `models/store/base.py`);
the MongoDB case is in `test_config_cli.py` and `test_start_failures.py`. While the server
runs, the same error is a 503 on REST, not a logged 500.
"""

from __future__ import annotations

import logging

import aiohttp

from server.keys import STORE
from tests.conftest import Api, Server, register
from tests.rest_support import raw
from tests.test_config_cli import _clean_env, _run


async def test_serve_with_an_sqlite_file_that_cannot_be_opened_exits_with_a_message(tmp_path):
    unopenable = tmp_path / "a-directory.db"
    unopenable.mkdir()
    env = _clean_env(WHATSCHAT_DATA_DIR=str(tmp_path), WHATSCHAT_DATABASE_PATH=str(unopenable))
    code, _, err = await _run("serve", env=env)
    assert code == 1, err
    assert "error: SQLite: unable to open database file" in err
    assert str(unopenable) in err
    assert "Traceback" not in err


async def test_rest_answers_503_while_the_store_cannot_be_used(server: Server, api: Api, caplog) -> None:
    """Not a logged 500: the database being away is not a bug, and the client may retry."""
    user = await register(api)
    await server.app[STORE].close()  # every call now raises StoreUnavailable, as a lost database would
    async with aiohttp.ClientSession() as session:
        answer = await raw(session, "GET", server.api + "/users", token=user.token)
    assert answer.status == 503, answer.body
    assert answer.body["success"] is False and answer.body["error"]["code"] == "SYS_001"
    assert answer.body["error"]["message"] == "Service unavailable: the database cannot be used right now"
    assert answer.headers["Retry-After"] == "1"
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], [record.getMessage() for record in errors]
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "store unavailable" in r.getMessage()
    ]
    assert warnings == ["GET /api/v1/users: store unavailable: SQLite: store is not open"], warnings
