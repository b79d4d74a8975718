"""Helpers shared by the Node test files: the npm project in tests/node and running a script of it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool

NODE_DIR = Path(__file__).resolve().parent / "node"


def node_with_client() -> str:
    """The `node` executable, once tests/node has its socket.io-client installed (the test fails otherwise)."""
    node = require_tool("node")
    if not (NODE_DIR / "node_modules" / "socket.io-client" / "package.json").is_file():
        pytest.fail("tests/node/node_modules lacks socket.io-client: run `make node` (npm ci in tests/node)")
    return node


async def run_node(node: str, *args: str, timeout: float) -> tuple[int, str, str]:
    """Runs `node *args` in tests/node: its exit code, stdout and stderr; fails the test after `timeout` s."""
    proc = await asyncio.create_subprocess_exec(
        node, *args, cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        pytest.fail(f"node {' '.join(args)} did not finish within {timeout} s")
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def json_report(script: Path, code: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The last JSON line `script` printed: its report (the test fails if it printed none)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON from {script.name} (exit {code})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    return json.loads(lines[-1])
