"""The README's quick start, run as written against a real server, so that it cannot rot.

The fenced `sh` and `js` blocks of its "Quick start" section are taken from README.md: the
`js` block is saved as `tour.js` and the `sh` blocks run in order, in one fresh `bash`
(no profile, no virtualenv, no WHATSCHAT_ variable: only PATH, HOME and, standing in for
`npm install socket.io-client`, a NODE_PATH to tests/node/node_modules). The one change
made to the text is the address: the server under test listens on a free port, so
`localhost:3001` becomes it. Then the snippet's own failure handlers are run: without the
exported variables, with a token the server refuses, and with no server at all, it says so
and exits 1 instead of waiting in silence. Every run is bounded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_support import Node, server_env
from tests.node_support import NODE_DIR, node_with_client
from tests.redis_support import free_port

pytestmark = pytest.mark.node
README = Path(__file__).resolve().parent.parent / "README.md"
RUN_SECONDS = 60


def quick_start(title: str = "Quick start") -> list[tuple[str, str]]:
    """(language, text) of each `sh` or `js` block of a section (the Quick start by default), in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(sh|js)\n(.*?)^```$", section, re.S | re.M)]


def fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """What a new terminal has, and no more: no virtualenv on PATH, no setting in the environment."""
    tools = {Path(shutil.which(name) or "/usr/bin/true").parent for name in ("node", "curl")}
    path = ":".join([*sorted(str(t) for t in tools), "/usr/local/bin", "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(home), "NODE_PATH": str(NODE_DIR / "node_modules"), **extra}


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the README's blocks did not finish within {RUN_SECONDS} s\n{exc.stdout}\n{exc.stderr}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Node]:
    node = Node("readme", server_env(tmp_path / "data", "", free_port()), tmp_path / "server.log")
    node.start()
    yield node
    node.stop()


def test_the_quick_start_runs_as_written(tmp_path: Path, server: Node) -> None:
    node_with_client()
    blocks = quick_start()
    assert [language for language, _ in blocks] == ["sh", "sh", "js", "sh"], blocks
    address = server.url.removeprefix("http://")
    folder = tmp_path / "tour"
    folder.mkdir()
    (folder / "tour.js").write_text(blocks[2][1].replace("localhost:3001", address), encoding="utf-8")
    script = "\n".join(text.replace("localhost:3001", address) for language, text in blocks if language == "sh")
    done = bash(script, folder, fresh_env(tmp_path))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "bob: connected as bob" in done.stdout and "alice: connected as alice" in done.stdout, output
    assert re.search(r"^alice's message [0-9a-f]{24} is stored$", done.stdout, re.M), output
    assert "bob's socket got: alice: Hello, Bob!" in done.stdout, output
    assert "Traceback" not in output, output


def test_the_plain_websocket_section_runs_as_written(tmp_path: Path, server: Node) -> None:
    """The `/ws` session: its `sh` block, then its `js` block saved as `ws-tour.js` and run (`ws` from tests/node)."""
    node_with_client()
    blocks = quick_start("A plain WebSocket")
    assert [language for language, _ in blocks] == ["sh", "js"], blocks
    address = server.url.removeprefix("http://")
    folder = tmp_path / "ws-tour"
    folder.mkdir()
    (folder / "ws-tour.js").write_text(blocks[1][1].replace("localhost:3001", address), encoding="utf-8")
    script = blocks[0][1].replace("localhost:3001", address) + "\nnode ws-tour.js\n"
    done = bash(script, folder, fresh_env(tmp_path))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"^chat [0-9a-f]{24}$", done.stdout, re.M), output
    assert re.search(r"^carol's message [0-9a-f]{24} is stored$", done.stdout, re.M), output
    assert "dave's socket got: carol: Hello, Dave!" in done.stdout, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("case", ["variables not exported", "token refused", "no server"])
def test_the_snippet_says_what_is_wrong(tmp_path: Path, server: Node, case: str) -> None:
    node_with_client()
    snippet = quick_start()[2][1]
    address = server.url.removeprefix("http://") if case != "no server" else f"127.0.0.1:{free_port()}"
    folder = tmp_path / "tour"
    folder.mkdir()
    (folder / "tour.js").write_text(snippet.replace("localhost:3001", address), encoding="utf-8")
    variables = (
        {} if case == "variables not exported" else {"TOKEN": "x.y.z", "BOB_TOKEN": "x.y.z", "CHAT_ID": "0" * 24}
    )
    done = bash("node tour.js", folder, fresh_env(tmp_path, **variables))
    expected = {
        "variables not exported": "TOKEN, BOB_TOKEN and CHAT_ID are not set: run the curl steps above in this shell",
        "token refused": "bob: refused (AUTH_001 ",
        "no server": "bob: cannot connect (",
    }[case]
    assert done.returncode == 1 and expected in done.stderr, done.stdout + done.stderr
    print(f"\n{case}: {done.stderr.strip()}")


def test_the_readme_names_no_bare_python_command() -> None:
    """`python -m server ...` fails outside the virtualenv: the README says `.venv/bin/python` (or a make target)."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", README.read_text(encoding="utf-8"), re.S | re.M)
    commands = [line for block in blocks for line in block.splitlines()]
    assert any(".venv/bin/python -m server" in line for line in commands)
    assert [line for line in commands if re.search(r"(^|[\s=])python3? -m server", line)] == []
