"""Every start that cannot succeed ends the real `python -m server serve` at once, in one line.

Each test starts the server as a subprocess, the way a person would, with something wrong:
its port taken (one process, two workers, a running WhatsChat group), its data folder
unwritable for the user running it, its database damaged, MongoDB or Redis not answering.
Each asserts the exit status, the one line on stderr (what is wrong and what to do, no
traceback) and that "listening" was never logged; the wait for the exit is bounded
generously (`WAIT_SECONDS`), a bound on the test, not a claim about speed. Each prints its
line and the time it took.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.config import Config
from tests.cluster_support import Node, server_env
from tests.process_support import Outcome, clean_env, run_server, without_dac_override
from tests.redis_support import RedisServer, free_port

PORT_TAKEN = "the port is already in use (another WhatsChat, or another program, listens there)"
WRITABLE = "must be writable by the user running the server"


def one_line(outcome: Outcome, case: str) -> str:
    """The failure's only line, checked for what every failed start must look like."""
    assert outcome.code == 1, outcome.describe()
    assert len(outcome.lines) == 1, outcome.describe()
    assert outcome.lines[0].startswith("error: "), outcome.describe()
    assert "Traceback" not in outcome.stderr and "listening" not in outcome.stderr, outcome.describe()
    print(f"\n{case}: exit {outcome.code} after {outcome.seconds:.2f} s: {outcome.lines[0]}")
    return outcome.lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on (a plain socket, no SO_REUSEPORT)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def env_for(data_dir: Path, port: int, **settings: str) -> dict[str, str]:
    defaults = {"WHATSCHAT_SERVER_HOST": "127.0.0.1", "WHATSCHAT_AUTH_BCRYPT_ROUNDS": "4"}
    return clean_env(**defaults, WHATSCHAT_DATA_DIR=str(data_dir), WHATSCHAT_SERVER_PORT=str(port)) | settings


# the port


def test_a_taken_port_stops_one_process(tmp_path: Path, taken_port: int) -> None:
    outcome = run_server("serve", env=env_for(tmp_path / "data", taken_port))
    line = one_line(outcome, "port taken, 1 process")
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{taken_port}: {PORT_TAKEN}; stop it, or choose")
    assert "server.port (WHATSCHAT_SERVER_PORT, or --port)" in line
    assert not (tmp_path / "data").exists(), "nothing is opened before the address is taken"


@pytest.mark.redis
def test_a_taken_port_stops_two_workers_before_they_start(tmp_path: Path, taken_port: int) -> None:
    with RedisServer(log=tmp_path / "redis.log") as redis:
        env = env_for(tmp_path / "data", taken_port, WHATSCHAT_REDIS_URL=redis.url)
        outcome = run_server("serve", "--workers", "2", env=env)
    line = one_line(outcome, "port taken, 2 workers")
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{taken_port}: {PORT_TAKEN}")


@pytest.mark.redis
def test_a_port_a_running_whatschat_group_holds_is_refused(tmp_path: Path) -> None:
    """Workers share a port with SO_REUSEPORT, which would let a second group of the same user join in silently."""
    with RedisServer(log=tmp_path / "redis.log") as redis:
        port = free_port()
        first = Node(
            "first", server_env(tmp_path / "data", redis.url, port), tmp_path / "first.log", ("--workers", "2")
        )
        first.start()
        try:
            env = env_for(tmp_path / "data", port, WHATSCHAT_REDIS_URL=redis.url)
            outcome = run_server("serve", "--workers", "2", env=env)
            line = one_line(outcome, "port held by a running WhatsChat with 2 workers")
            assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: {PORT_TAKEN}")
            assert first.running, "the group already running is left alone"
        finally:
            first.stop()


# the data folder and the database


def _read_only(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        path.chmod(0o444 if path.is_file() else 0o555)


@pytest.mark.parametrize("state", ["with its database", "empty", "as the parent of data_dir"])
def test_a_data_folder_this_user_cannot_write_stops_the_start(tmp_path: Path, state: str) -> None:
    """Entered by a process file permissions apply to (root's override dropped): it used to hang for ever."""
    folder = tmp_path / "data"
    folder.mkdir()
    if state == "with its database":  # made writable first, as a server that ran before left it
        connection = sqlite3.connect(folder / "whatschat.db")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
    data_dir = folder / "inner" / "data" if state == "as the parent of data_dir" else folder
    _read_only(folder)
    try:
        preexec = without_dac_override(folder)
        outcome = run_server("serve", env=env_for(data_dir, free_port()), preexec=preexec)
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    line = one_line(outcome, f"data folder read-only, {state}")
    assert f"the data folder {data_dir} {WRITABLE}" in line
    assert "set data_dir (WHATSCHAT_DATA_DIR) to one it can write" in line
    if state == "with its database":
        assert line.startswith(f"error: SQLite: attempt to write a readonly database: {folder / 'whatschat.db'};")


def test_a_file_that_is_not_a_database_stops_the_start(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "whatschat.db").write_bytes(b"not a database, " * 512)
    line = one_line(run_server("serve", env=env_for(folder, free_port())), "damaged database")
    assert line == (
        f"error: SQLite: file is not a database: {folder / 'whatschat.db'}; the file is damaged or is not a"
        " WhatsChat database: restore it from a backup, or move it away"
    )


def test_at_debug_level_the_traceback_is_shown_too(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "whatschat.db").write_bytes(b"not a database, " * 512)
    outcome = run_server("serve", env=env_for(folder, free_port(), WHATSCHAT_LOGGING_LEVEL="DEBUG"))
    assert outcome.code == 1 and "Traceback" in outcome.stderr, outcome.describe()
    assert outcome.lines[-1].startswith("error: SQLite: file is not a database"), outcome.describe()


# MongoDB and Redis that do not answer


@pytest.mark.parametrize("timeout", ["default", "1"])
def test_a_mongodb_that_does_not_answer_stops_the_start_within_its_timeout(tmp_path: Path, timeout: str) -> None:
    port = free_port()  # nothing listens there
    settings = {"WHATSCHAT_DATABASE_BACKEND": "mongodb", "WHATSCHAT_DATABASE_URL": f"mongodb://127.0.0.1:{port}/wc"}
    if timeout != "default":
        settings["WHATSCHAT_DATABASE_SERVER_SELECTION_TIMEOUT"] = timeout
    outcome = run_server("serve", env=env_for(tmp_path / "data", free_port(), **settings))
    line = one_line(outcome, f"MongoDB not answering, server_selection_timeout {timeout}")
    waited = f"{Config().database.server_selection_timeout:g}" if timeout == "default" else timeout
    assert line.startswith(f"error: MongoDB: 127.0.0.1:{port}: "), line
    assert line.endswith(
        "check database.url (WHATSCHAT_DATABASE_URL) and that MongoDB runs and is reachable from here"
        f" (waited {waited} s, database.server_selection_timeout)"
    ), line
    assert outcome.seconds >= float(waited), "it waited for the server as long as configured"


def test_the_mongodb_timeout_defaults_to_a_few_seconds() -> None:
    assert 1 <= Config().database.server_selection_timeout <= 10


def test_workers_without_a_redis_that_answers_do_not_start(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", free_port(), WHATSCHAT_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    line = one_line(run_server("serve", "--workers", "2", env=env), "Redis not answering, 2 workers")
    assert line.startswith("error: Redis at redis.url does not answer (")
    assert line.endswith("start Redis, or fix redis.url (WHATSCHAT_REDIS_URL)")


def test_a_host_that_is_not_this_machines_stops_the_start(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", free_port(), WHATSCHAT_SERVER_HOST="192.0.2.1")  # TEST-NET-1: nobody's
    line = one_line(run_server("serve", env=env), "host not of this machine")
    assert line.startswith("error: cannot listen on 192.0.2.1:") and "is not an address of this machine" in line
