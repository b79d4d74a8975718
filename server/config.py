"""Settings: `config.yaml`, overridden by `WHATSCHAT_*` environment variables.

Every setting is declared once, as a field of a frozen dataclass whose metadata
carries the marshmallow field that validates it. Loading validates the whole
file and every override before anything starts, so a wrong value stops the
server with a message that names the key (`server.port: Not a valid integer.`).

Environment variables are named `WHATSCHAT_<SECTION>_<KEY>` in upper case, for
example `WHATSCHAT_SERVER_PORT=8080` or `WHATSCHAT_AUTH_JWT_SECRET=...`; a value
is read as YAML, so `true`, `42` and `[a, b]` have their usual types.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate

ENV_PREFIX = "WHATSCHAT_"
# variables of the command line and the tests, not settings
NOT_SETTINGS = ("WHATSCHAT_CONFIG", "WHATSCHAT_ADMIN_PASSWORD", "WHATSCHAT_TEST_")


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the key."""


def setting(marshmallow_field: fields.Field, default: Any) -> Any:
    """Declare one setting: its validator and its default."""
    factory = (lambda: list(default)) if isinstance(default, list) else None
    if factory:
        return field(default_factory=factory, metadata={"field": marshmallow_field})
    return field(default=default, metadata={"field": marshmallow_field})


def _port() -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(1, 65535))


def _positive(minimum: float = 1) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=minimum))


def _seconds(minimum: float = 0.05) -> fields.Float:
    return fields.Float(validate=validate.Range(min=minimum))


def _secret() -> fields.String:
    """Empty (one is generated into the data folder) or a real HS256 key: at least 32 bytes."""

    def strong_enough(value: str) -> None:
        if value and len(value.encode("utf-8")) < 32:
            raise ValidationError("Must be empty (to generate one) or at least 32 bytes long.")

    return fields.String(validate=strong_enough)


@dataclass(frozen=True)
class ServerConfig:
    host: str = setting(fields.String(validate=validate.Length(min=1)), "0.0.0.0")
    port: int = setting(_port(), 3001)
    max_body_size: int = setting(_positive(1024), 1024 * 1024)
    cors_origins: list[str] = setting(fields.List(fields.String()), ["*"])


@dataclass(frozen=True)
class DatabaseConfig:
    backend: str = setting(fields.String(validate=validate.OneOf(["sqlite", "mongodb"])), "sqlite")
    path: str = setting(fields.String(validate=validate.Length(min=1)), "whatschat.db")
    url: str = setting(fields.String(), "")
    server_selection_timeout: float = setting(_seconds(0.1), 5.0)


_NAME = validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$", error="Letters, digits, '_', '.' and '-' only (1 to 64).")


@dataclass(frozen=True)
class RedisConfig:
    url: str = setting(fields.String(), "")
    deployment: str = setting(fields.String(validate=_NAME), "whatschat")
    channel: str = setting(fields.String(), "")
    key_prefix: str = setting(fields.String(), "")

    @property
    def channel_name(self) -> str:
        """Socket.IO's pub/sub channel between the processes of this deployment: `channel`, else `deployment`."""
        return self.channel or self.deployment

    @property
    def prefix(self) -> str:
        """The start of every Redis key this deployment writes: `key_prefix`, else `<deployment>:`."""
        return self.key_prefix or f"{self.deployment}:"


@dataclass(frozen=True)
class AuthConfig:
    jwt_secret: str = setting(_secret(), "")
    access_token_ttl: int = setting(_positive(), 7 * 24 * 3600)
    refresh_token_ttl: int = setting(_positive(), 30 * 24 * 3600)
    reset_token_ttl: int = setting(_positive(), 3600)
    bcrypt_rounds: int = setting(fields.Integer(strict=True, validate=validate.Range(4, 31)), 12)
    login_failures_per_account: int = setting(_positive(), 5)
    login_failures_per_address: int = setting(_positive(), 200)
    login_failure_window: int = setting(_positive(), 900)


@dataclass(frozen=True)
class MailConfig:
    smtp_host: str = setting(fields.String(), "")
    smtp_port: int = setting(_port(), 25)
    smtp_username: str = setting(fields.String(), "")
    smtp_password: str = setting(fields.String(), "")
    smtp_starttls: bool = setting(fields.Boolean(), False)
    sender: str = setting(fields.String(validate=validate.Length(min=3)), "WhatsChat <no-reply@localhost>")
    outbox_dir: str = setting(fields.String(validate=validate.Length(min=1)), "outbox")
    reset_url: str = setting(
        fields.String(validate=validate.Length(min=1)), "http://localhost:3001/reset-password?token={token}"
    )


@dataclass(frozen=True)
class SocketIOConfig:
    auth_timeout: float = setting(_seconds(), 10.0)
    ping_interval: float = setting(_seconds(0.1), 25.0)
    ping_timeout: float = setting(_seconds(0.1), 20.0)
    max_payload: int = setting(_positive(1024), 4 * 1024 * 1024)
    cors_origins: list[str] = setting(fields.List(fields.String()), ["*"])
    websocket_compression: bool = setting(fields.Boolean(), False)


@dataclass(frozen=True)
class PresenceConfig:
    grace_period: float = setting(_seconds(0), 5.0)


@dataclass(frozen=True)
class CallsConfig:
    ring_timeout: float = setting(_seconds(0.05), 30.0)


@dataclass(frozen=True)
class LimitsConfig:
    messages_per_second: float = setting(_seconds(0.01), 100.0)
    messages_burst: int = setting(_positive(), 500)
    typing_per_second: float = setting(_seconds(0.01), 5.0)
    typing_burst: int = setting(_positive(), 20)
    reads_per_second: float = setting(_seconds(0.01), 50.0)
    reads_burst: int = setting(_positive(), 200)
    uploads_per_second: float = setting(_seconds(0.001), 1.0)
    uploads_burst: int = setting(_positive(), 10)
    ephemeral_queue: int = setting(_positive(), 64)
    max_queue: int = setting(_positive(), 2000)

    def budgets(self) -> dict[str, tuple[float, float]]:
        return {
            kind: (getattr(self, f"{kind}_per_second"), getattr(self, f"{kind}_burst"))
            for kind in ("messages", "typing", "reads", "uploads")
        }


@dataclass(frozen=True)
class UploadsConfig:
    dir: str = setting(fields.String(validate=validate.Length(min=1)), "uploads")
    max_size: int = setting(_positive(1), 10 * 1024 * 1024)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = setting(fields.String(validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])), "INFO")
    format: str = setting(fields.String(validate=validate.OneOf(["json", "text"])), "text")


@dataclass(frozen=True)
class Config:
    data_dir: str = setting(fields.String(validate=validate.Length(min=1)), "data")
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    socketio: SocketIOConfig = field(default_factory=SocketIOConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def in_data_dir(self, name: str) -> Path:
        """Resolve a path setting: relative paths live under `data_dir`."""
        path = Path(name)
        return path if path.is_absolute() else self.data_path / path

    def replace(self, **sections: Any) -> Config:
        """A copy with some settings changed, validated like a file would be.

        Each keyword is a section's changed settings (a mapping) or a top-level setting's value (`data_dir`).
        """
        merged = _as_dict(self)
        for name, values in sections.items():
            if isinstance(merged.get(name), dict):
                merged[name] = {**merged[name], **values}
            else:
                merged[name] = values
        return _build(merged)


def _sections() -> dict[str, type]:
    """Each nested section of `Config`, by name: its default factory is its class."""
    return {f.name: cast(type, f.default_factory) for f in dataclasses.fields(Config) if "field" not in f.metadata}


def _schema_for(cls: type) -> Schema:
    declared: dict[str, Any] = dict(_declared(cls))
    for name, section in _sections().items() if cls is Config else ():
        declared[name] = fields.Nested(_schema_for(section).__class__, unknown=RAISE)
    return Schema.from_dict(declared, name=cls.__name__ + "Schema")(unknown=RAISE)


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            out += _flatten(value, f"{prefix}{key}." if not isinstance(value, list) else f"{prefix}{key}")
        return out
    if isinstance(messages, list):
        return [f"{prefix.rstrip('.')}: {m}" for m in messages if isinstance(m, str)] + [
            line for m in messages if not isinstance(m, str) for line in _flatten(m, prefix)
        ]
    return [f"{prefix.rstrip('.')}: {messages}"]


def _build(raw: Mapping[str, Any]) -> Config:
    try:
        loaded = _schema_for(Config).load(raw)
    except ValidationError as exc:
        raise ConfigError("invalid configuration: " + "; ".join(_flatten(exc.messages))) from None
    sections = {name: cls(**loaded.pop(name, {})) for name, cls in _sections().items()}
    return Config(**loaded, **sections)


def _as_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Collect `WHATSCHAT_SECTION_KEY` variables; unknown names are errors too."""
    sections = _sections()
    out: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(NOT_SETTINGS):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        section, _, rest = key.partition("_")
        if section in sections and rest in _declared(sections[section]):
            out.setdefault(section, {})[rest] = _parse_env(_declared(sections[section])[rest], text)
        elif key in _declared(Config):
            out[key] = _parse_env(_declared(Config)[key], text)
        else:
            raise ConfigError(f"invalid configuration: {name}: unknown setting")
    return out


def _declared(cls: type) -> dict[str, fields.Field]:
    return {f.name: f.metadata["field"] for f in dataclasses.fields(cls) if "field" in f.metadata}


def _parse_env(declared: fields.Field, text: str) -> Any:
    """Strings stay verbatim (secrets like `0123` must not turn into numbers); the rest is YAML."""
    if isinstance(declared, fields.String):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply environment overrides and validate."""
    raw: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid configuration: {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"invalid configuration: {path}: the top level must be a mapping")
    for key, value in _env_overrides(os.environ if environ is None else environ).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return _build(raw)
