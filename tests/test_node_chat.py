"""A multi-user chat driven by Node's socket.io-client 4.x (`tests/node/chat.mjs`).

The script talks to the server under test over REST (fetch) and Socket.IO (websocket and
long-polling), prints one JSON line of observations and exits 0 only if every check passed;
every step in it is bounded by a timeout, and so is the whole run here.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from server.keys import SIO
from tests.conftest import Server
from tests.node_support import NODE_DIR, json_report, node_with_client, run_node

SCRIPT = NODE_DIR / "chat.mjs"
RUN_TIMEOUT = 75


@pytest.mark.node
async def test_node_client_chat_scenario(server: Server) -> None:
    node = node_with_client()
    code, stdout, stderr = await run_node(node, str(SCRIPT), server.url, timeout=RUN_TIMEOUT)
    report = json_report(SCRIPT, code, stdout, stderr)
    print(f"\nnode chat scenario: {len(report['checks'])} checks passed, figures {json.dumps(report['figures'])}")
    assert code == 0 and report["ok"], f"chat.mjs failed: {report.get('failed')}\nstderr:\n{stderr}"
    figures = report["figures"]
    assert len(report["checks"]) == figures["checks"] == 14
    assert figures["syncMissed"] == figures["syncGot"] == 4
    assert figures["removedMemberGotGroupMessage"] is False
    assert figures["messagesSent"]["socket"] >= 8 and figures["messagesSent"]["rest"] >= 2
    assert figures["transports"]["ben"] == "polling" and figures["transports"]["ana"] == "websocket"
    # every client said goodbye before node exited, the long-polling one too: no Engine.IO socket lingers
    # (a polling socket whose GET is left waiting would hold the server's shutdown for ping_interval + ping_timeout)
    sio = server.app[SIO]
    for _ in range(100):
        if not sio.eio.sockets:
            break
        await asyncio.sleep(0.1)
    assert not sio.eio.sockets, f"Engine.IO sockets left after every client disconnected: {list(sio.eio.sockets)}"
