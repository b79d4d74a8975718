"""A real server process on FerretDB 1.24 (MongoDB's wire protocol) when the database goes away.

The store tests show the backend's answers in-process; these run
`python -m server serve` with `database.backend: mongodb` against a private FerretDB
(`tests/ferretdb_support.py`), as a deployment would, because what matters here is what
a client and an operator see: a start against a URL nobody answers ends in one line
within the configured wait; a database lost under a running server turns requests into
503 SYS_001 (retryable, not a logged 500) and health into `unhealthy`; and the same
FerretDB back on the same port and folder serves again, with what was written before.
Every wait is bounded polling; nothing asserts on speed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_support import Node, health, server_env, wait_until
from tests.ferretdb_support import FerretDB
from tests.process_support import run_server
from tests.redis_support import free_port

SELECTION_TIMEOUT = "1"  # seconds pymongo waits for a server: keeps each 503 quick, the test's bounds generous
DOWN_SECONDS = 30.0
UP_SECONDS = 30.0


def call(
    url: str, method: str = "GET", body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    """One request on a fresh connection: (status, JSON body, headers); (0, None, {}) when nothing answers."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)
    except (OSError, ValueError):
        return 0, None, {}


def mongodb_env(data_dir: Path, url: str) -> dict[str, str]:
    """A node on MongoDB at `url` (database `whatschat`), without Redis: the database alone decides health."""
    return server_env(
        data_dir,
        "",
        free_port(),
        WHATSCHAT_DATABASE_BACKEND="mongodb",
        WHATSCHAT_DATABASE_URL=url + "whatschat",
        WHATSCHAT_DATABASE_SERVER_SELECTION_TIMEOUT=SELECTION_TIMEOUT,
    )


@pytest.fixture
def ferretdb(tmp_path: Path) -> Iterator[FerretDB]:
    server = FerretDB(tmp_path / "ferretdb").start()
    try:
        yield server
    finally:
        server.stop()


def test_a_ferretdb_that_is_not_there_stops_the_start_in_one_line(tmp_path: Path, ferretdb: FerretDB) -> None:
    """Its port, once it has gone: the URL of a deployment whose database is down, not a made-up one."""
    url = ferretdb.url
    ferretdb.stop()
    outcome = run_server("serve", env=mongodb_env(tmp_path / "data", url))
    print(f"\nFerretDB gone: exit {outcome.code} after {outcome.seconds:.2f} s: {outcome.stderr.strip()}")
    assert outcome.code == 1, outcome.describe()
    assert len(outcome.lines) == 1 and "Traceback" not in outcome.stderr, outcome.describe()
    line = outcome.lines[0]
    assert line.startswith(f"error: MongoDB: 127.0.0.1:{ferretdb.port}: "), line
    assert "database.url (WHATSCHAT_DATABASE_URL)" in line, line
    assert f"(waited {SELECTION_TIMEOUT} s, database.server_selection_timeout)" in line, line
    assert outcome.seconds >= float(SELECTION_TIMEOUT), "it waited for the server as long as configured"
    assert "listening" not in outcome.stdout + outcome.stderr


def test_losing_ferretdb_is_503_and_unhealthy_and_its_return_serves_the_old_data(
    tmp_path: Path, ferretdb: FerretDB
) -> None:
    node = Node("ferretdb", mongodb_env(tmp_path / "data", ferretdb.url), tmp_path / "server.log")
    api = node.url + "/api/v1"

    def logs() -> str:
        return f"server:\n{node.tail()}\nferretdb:\n{ferretdb.tail()}"

    try:
        node.start()
        status, body, _ = call(
            api + "/auth/register",
            "POST",
            {"username": "ferret_alice", "email": "ferret.alice@example.com", "password": "Passw0rd"},
        )
        assert status == 201, body
        token, alice = body["data"]["token"], body["data"]["user"]["id"]
        status, body, _ = call(api + "/groups", "POST", {"name": "burrow", "participants": []}, token)
        assert status in (200, 201), body
        chat = body["data"]["id"]
        status, body, _ = call(api + "/messages", "POST", {"chatId": chat, "content": "before the outage"}, token)
        assert status in (200, 201), body
        before = body["data"]["id"]

        ferretdb.stop()
        answers: list[tuple[int, Any, dict[str, str]]] = []

        def refused() -> bool:
            answers.append(call(api + f"/users/{alice}", token=token))
            return answers[-1][0] != 200

        wait_until(refused, DOWN_SECONDS, "requests still succeeded with FerretDB stopped", logs)
        status, body, headers = answers[-1]
        assert status == 503, (status, body, logs())
        assert body["success"] is False and body["error"]["code"] == "SYS_001", body
        assert headers.get("Retry-After") == "1", headers
        code, report = health(node.url)
        assert code == 503 and report["status"] == "unhealthy", (code, report)
        assert report["services"]["database"] == "unhealthy", report
        assert node.running, "losing the database must not end the process"
        print(f"\nFerretDB down: {status} {body['error']['code']}, health {code} {report['services']}")

        ferretdb.start()  # the same port and folder

        def back() -> bool:
            code, report = health(node.url)
            return code == 200 and report.get("services", {}).get("database") == "healthy"

        wait_until(back, UP_SECONDS, "health did not recover after FerretDB came back", logs)
        status, body, _ = call(api + f"/messages/{chat}?limit=50", token=token)
        assert status == 200, body
        assert [m["id"] for m in body["data"]["messages"]] == [before], body
        assert body["data"]["messages"][0]["content"] == "before the outage"
        status, body, _ = call(api + "/messages", "POST", {"chatId": chat, "content": "after the outage"}, token)
        assert status in (200, 201), body
        status, body, _ = call(api + f"/messages/{chat}?limit=50", token=token)
        assert status == 200 and [m["content"] for m in body["data"]["messages"]] == [
            "after the outage",
            "before the outage",
        ], body
        print(f"FerretDB back: health 200, the old message and a new one in history ({len(answers)} polls down)")
    finally:
        node.stop()
    assert "Traceback" not in node.tail(), node.tail()
