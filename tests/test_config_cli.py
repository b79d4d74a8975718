"""Settings (`config.yaml`, `WHATSCHAT_*`) and the command line (`python -m server`)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from server.config import Config, ConfigError, load_config
from tests.conftest import Api, start_server
from tests.rest_support import assert_error

ROOT = Path(__file__).resolve().parent.parent
CONFIG_YAML = ROOT / "config.yaml"


# config.yaml


def test_config_yaml_equals_the_built_in_defaults():
    assert load_config(CONFIG_YAML, {}) == load_config(None, {})
    assert load_config(None, {}) == Config()


def test_config_yaml_lists_every_setting():
    raw = yaml.safe_load(CONFIG_YAML.read_text(encoding="utf-8"))
    defaults = dataclasses.asdict(Config())
    assert set(raw) == set(defaults)
    for name, value in defaults.items():
        if isinstance(value, dict):
            assert set(raw[name]) == set(value), name


def test_every_key_in_config_yaml_is_commented():
    """Each setting has a comment directly above it (or above the run of keys it belongs to,
    with no blank line between), or its section has one."""
    lines = CONFIG_YAML.read_text(encoding="utf-8").splitlines()
    key = re.compile(r"^(\s*)([A-Za-z_]\w*):(.*)$")
    section_commented = False
    undocumented = []
    for number, line in enumerate(lines):
        match = key.match(line)
        if not match:
            continue
        indent, name, value = match.groups()
        above = number - 1
        while above >= 0 and (m := key.match(lines[above])) and m.group(1) == indent and m.group(3).strip():
            above -= 1  # keys of the same group share the comment that leads it
        commented = above >= 0 and lines[above].strip().startswith("#")
        if not indent and not value.strip():  # a section header
            section_commented = lines[number - 1].strip().startswith("#") if number else False
            continue
        if not commented and not (indent and section_commented):
            undocumented.append(name)
    assert undocumented == []


# environment and validation


def test_environment_overrides():
    config = load_config(CONFIG_YAML, {"WHATSCHAT_SERVER_PORT": "8080", "WHATSCHAT_AUTH_JWT_SECRET": "0123" * 8})
    assert config.server.port == 8080
    assert config.auth.jwt_secret == "0123" * 8  # strings stay strings
    assert load_config(None, {"WHATSCHAT_DATA_DIR": "/srv/chat"}).data_dir == "/srv/chat"
    assert load_config(None, {"WHATSCHAT_SOCKETIO_CORS_ORIGINS": "[a, b]"}).socketio.cors_origins == ["a", "b"]
    # variables of the tools are not settings
    assert load_config(None, {"WHATSCHAT_CONFIG": "x.yaml", "WHATSCHAT_ADMIN_PASSWORD": "x"}) == Config()


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 4000\n  host: 127.0.0.1\n", encoding="utf-8")
    config = load_config(path, {"WHATSCHAT_SERVER_PORT": "5000"})
    assert (config.server.port, config.server.host) == (5000, "127.0.0.1")


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"WHATSCHAT_SERVER_PORT": "abc"}, "server.port"),
        ({"WHATSCHAT_SERVER_PORT": "70000"}, "server.port"),
        ({"WHATSCHAT_AUTH_BCRYPT_ROUNDS": "99"}, "auth.bcrypt_rounds"),
        ({"WHATSCHAT_LOGGING_LEVEL": "LOUD"}, "logging.level"),
        ({"WHATSCHAT_SERVER_PROT": "1"}, "WHATSCHAT_SERVER_PROT"),
        ({"WHATSCHAT_AUTH_JWT_SECRET": "short"}, "auth.jwt_secret"),
    ],
)
def test_wrong_environment_values_name_the_key(environ, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(None, environ)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("server:\n  prot: 1\n", "server.prot"),
        ("nonsense: true\n", "nonsense"),
        ("auth:\n  bcrypt_rounds: 99\n", "auth.bcrypt_rounds"),
        ("database:\n  backend: oracle\n", "database.backend"),
        ("server:\n  port: '3001'\n", "server.port"),
    ],
)
def test_wrong_file_values_name_the_key(tmp_path, text, key):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(path, {})


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path, {})


def test_replace_validates_like_a_file():
    with pytest.raises(ConfigError, match=r"auth\.bcrypt_rounds"):
        Config().replace(auth={"bcrypt_rounds": 3})


# the command line


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSCHAT_")}
    return {**env, **extra}


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_help_names_the_commands():
    code, out, _ = await _run("--help", env=_clean_env())
    assert code == 0
    assert "serve" in out and "create-admin" in out


async def test_serve_with_a_wrong_setting_exits_naming_the_key():
    code, _, err = await _run("serve", env=_clean_env(WHATSCHAT_SERVER_PORT="abc"))
    assert code != 0
    assert "server.port" in err


async def test_serve_with_a_mongodb_that_does_not_answer_exits_with_a_message(tmp_path):
    env = _clean_env(
        WHATSCHAT_DATA_DIR=str(tmp_path),
        WHATSCHAT_DATABASE_BACKEND="mongodb",
        WHATSCHAT_DATABASE_URL="mongodb://127.0.0.1:1/whatschat?serverSelectionTimeoutMS=300",
    )
    code, _, err = await _run("serve", env=env)
    assert code == 1
    assert "error: MongoDB: 127.0.0.1:1" in err
    assert "Traceback" not in err


async def test_create_admin_makes_an_administrator_who_can_log_in(tmp_path, config):
    data_dir = tmp_path / "admin-data"
    env = _clean_env(WHATSCHAT_DATA_DIR=str(data_dir), WHATSCHAT_AUTH_BCRYPT_ROUNDS="4")
    code, out, err = await _run("create-admin", "Admin@Example.com", "--password", "Adm1nPass", env=env)
    assert code == 0, err
    assert "admin@example.com" in out
    assert stat.S_IMODE((data_dir / "jwt_secret").stat().st_mode) == 0o600

    # a weak password is refused before anything is created, in the words of the REST envelope
    code, _, err = await _run("create-admin", "other@example.com", "--password", "weak", env=env)
    assert code == 1
    assert err.startswith("error: Validation failed (VAL_001): password: Length must be between 6 and 128."), err
    assert "{" not in err and "[" not in err and len(err.strip().splitlines()) == 1

    srv = await start_server(config.replace(data_dir=str(data_dir)))
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, srv.api)
            status, body = await api.post("/auth/login", json={"email": "admin@example.com", "password": "Adm1nPass"})
            assert status == 200, body
            assert body["data"]["user"]["role"] == "admin"
            assert body["data"]["user"]["username"] == "Admin"
            status, body = await api.post("/auth/login", json={"email": "other@example.com", "password": "weak"})
            assert_error(status, body, 401, "AUTH_003")
    finally:
        await srv.runner.cleanup()


async def test_create_admin_promotes_an_existing_user(tmp_path, config):
    data_dir = tmp_path / "promote-data"
    srv = await start_server(config.replace(data_dir=str(data_dir)))
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, srv.api)
            status, body = await api.post(
                "/auth/register", json={"username": "plain_bob", "email": "bob@example.com", "password": "Passw0rd"}
            )
            assert status == 201
            token = body["data"]["token"]
            env = _clean_env(WHATSCHAT_DATA_DIR=str(data_dir), WHATSCHAT_AUTH_BCRYPT_ROUNDS="4")
            code, out, err = await _run("create-admin", "bob@example.com", "--password", "Unused1x", env=env)
            assert code == 0, err
            assert "bob@example.com" in out
            status, body = await api.get("/auth/me", token=token)
            assert body["data"]["role"] == "admin"
            # the password was not changed by the promotion
            status, _ = await api.post("/auth/login", json={"email": "bob@example.com", "password": "Passw0rd"})
            assert status == 200
    finally:
        await srv.runner.cleanup()


# the generated JWT secret


async def test_without_a_secret_one_is_generated_privately_and_a_warning_logged(config, caplog):
    caplog.set_level(logging.WARNING)
    srv = await start_server(config)
    await srv.runner.cleanup()
    secret = Path(config.data_dir) / "jwt_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text(encoding="ascii").strip()) >= 32
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "jwt_secret" in r.getMessage()]
    assert warnings, [r.getMessage() for r in caplog.records]
    # the same secret is used again next time
    before = secret.read_text(encoding="ascii")
    srv = await start_server(config)
    await srv.runner.cleanup()
    assert secret.read_text(encoding="ascii") == before


async def test_a_configured_secret_writes_no_file_and_logs_no_warning(config, caplog):
    caplog.set_level(logging.WARNING)
    srv = await start_server(config.replace(auth={"jwt_secret": "s" * 48}))
    await srv.runner.cleanup()
    assert not (Path(config.data_dir) / "jwt_secret").exists()
    assert not [r for r in caplog.records if "jwt_secret" in r.getMessage()]


def test_the_secret_file_is_private_from_its_first_byte(tmp_path, monkeypatch):
    """Created with mode 0600, not written world-readable and narrowed afterwards."""
    from models.tokens import load_or_create_secret

    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)  # a later chmod must not be what protects it
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    old_umask = os.umask(0o022)
    try:
        secret, generated = load_or_create_secret("", tmp_path / "d")
    finally:
        os.umask(old_umask)
    path = tmp_path / "d" / "jwt_secret"
    assert generated and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="ascii").strip() == secret
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["jwt_secret"], "no temporary file is left"


def test_processes_starting_together_agree_on_one_secret(tmp_path):
    """Several workers creating the secret at once must all end up with the one on disk."""
    import threading

    from models.tokens import load_or_create_secret

    data_dir = tmp_path / "shared"
    barrier = threading.Barrier(8)
    results: list[str] = []

    def start() -> None:
        barrier.wait()
        results.append(load_or_create_secret("", data_dir)[0])

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    on_disk = (data_dir / "jwt_secret").read_text(encoding="ascii").strip()
    assert results == [on_disk] * 8


def test_a_damaged_secret_file_stops_the_start(tmp_path):
    from models.tokens import load_or_create_secret

    (tmp_path / "jwt_secret").write_text("\n", encoding="ascii")
    with pytest.raises(ValueError, match="jwt_secret"):
        load_or_create_secret("", tmp_path)
