"""The Go Chat Web door driven from Node as the seed's Next.js front end drives it (`tests/node/gochat.mjs`).

The script talks to the server under test with global `fetch` (REST under `/api`)
and the `ws` package (the plain WebSocket at `/ws`), prints one JSON line of
observations and exits 0 only if every check passed; every step in it is
bounded by a timeout, and so is the whole run here. This file checks the report
and that no `/ws` connection outlives the script on the server.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from server.keys import CONFIG, HUB
from tests.conftest import Server
from tests.node_support import NODE_DIR, json_report, node_with_client, run_node

SCRIPT = NODE_DIR / "gochat.mjs"
RUN_TIMEOUT = 75
STEPS = 18


@pytest.mark.node
async def test_node_gochat_front_end_scenario(server: Server) -> None:
    node = node_with_client()
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").is_file():  # pinned in tests/node/package.json
        pytest.fail("tests/node/node_modules lacks ws: run `make node` (npm ci in tests/node)")
    code, stdout, stderr = await run_node(node, str(SCRIPT), server.url, timeout=RUN_TIMEOUT)
    report = json_report(SCRIPT, code, stdout, stderr)
    print(f"\nnode gochat scenario: {len(report['checks'])} checks passed, figures {json.dumps(report['figures'])}")
    assert code == 0 and report["ok"], f"gochat.mjs failed: {report.get('failed')}\nstderr:\n{stderr}"
    figures = report["figures"]
    assert len(report["checks"]) == figures["checks"] == STEPS
    assert figures["messagesSent"] == {"ws": 6, "rest": 1}
    assert figures["statusOrder"] == ["delivered", "read"]
    assert figures["removedMemberGotGroupMessage"] is False
    assert figures["badTokenStatus"] == 401 and figures["logoutCloseCode"] == 4001
    assert figures["refreshes"] == 2 and figures["uploadSize"] > 0
    assert figures["expiresIn"] == server.app[CONFIG].auth.access_token_ttl  # the real lifetime
    # every socket said goodbye (or was closed by the logout) before node exited: none lingers in the hub
    hub = server.app[HUB]
    for _ in range(100):
        if not len(hub):
            break
        await asyncio.sleep(0.1)
    assert not len(hub), f"/ws connections left after node exited: {list(hub.users)}"
