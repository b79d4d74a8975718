"""Authentication driven by Node's socket.io-client 4.x (`tests/node/auth.mjs`).

The script registers a user over REST (fetch), authenticates by handshake `auth`, by `?token=`
and by the `authenticate` event, calls `update_status` on `/status`, gets refused with a bad
token, and reconnects a namespace on a shared connection. It prints one JSON line and exits 0
only if every check passed; every step in it is bounded, and so is the whole run here.
"""

from __future__ import annotations

import pytest

from server.keys import STORE
from tests.conftest import Server
from tests.node_support import NODE_DIR, json_report, node_with_client, run_node

SCRIPT = NODE_DIR / "auth.mjs"
RUN_TIMEOUT = 45
STEPS = {
    "register over REST",
    "handshake auth",
    "authenticate event",
    "update_status on /status",
    "bad token",
    "query token",
    "namespace reconnect on a shared connection",
}


@pytest.mark.node
async def test_node_client_authentication(server: Server) -> None:
    node = node_with_client()
    code, stdout, stderr = await run_node(node, str(SCRIPT), server.url, timeout=RUN_TIMEOUT)
    report = json_report(SCRIPT, code, stdout, stderr)
    assert code == 0 and report["ok"] is True, f"auth.mjs failed: {report['failed']}\nstderr:\n{stderr}"
    assert report["failed"] == [] and set(report["checks"]) == STEPS

    user_id, checks = report["userId"], report["checks"]
    user = await server.app[STORE].get_user(user_id)  # the user the script registered is the one it signed in as
    assert user is not None and user.username == report["username"]
    assert checks["register over REST"]["status"] == 201
    assert checks["handshake auth"]["userId"] == user_id
    assert checks["query token"]["userId"] == user_id
    event = checks["authenticate event"]
    assert event["refusedCode"] == "AUTH_001"
    assert event["ackSuccess"] is True and event["ackUserId"] == event["userId"] == user_id
    status = checks["update_status on /status"]
    assert status == {"userId": user_id, "status": "away", "badCode": "VAL_001"}
    bad = checks["bad token"]
    assert bad["code"] == "AUTH_001" and bad["reason"] == "io server disconnect"
    assert bad["order"] == ["connect", "unauthorized", "disconnect"]
    reconnect = checks["namespace reconnect on a shared connection"]
    assert reconnect == {"userId": user_id, "sameEngine": True}
