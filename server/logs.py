"""Structured logs that never carry a password or a token.

Each record carries the request id of the request it belongs to (a context
variable set by the REST middleware). Secrets are scrubbed from every message,
including access-log lines whose query strings can hold `?token=`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def _scrubbed(key: str, value: str) -> str:
    quote = value[0] if value[0] in "\"'" else ""
    return f"{key}{quote}[redacted]{quote}"


_SECRETS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+"), "[token]"),  # any JWT
    (re.compile(r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}"), "[hash]"),  # a bcrypt hash (driver debug logs)
    (
        # `password=x`, `"token": "x y"`, `'newPassword': 'x'`: a quoted value is scrubbed to its closing quote
        re.compile(
            r"((?:token|refreshToken|password|currentPassword|newPassword)[\"']?\s*[=:]\s*)"
            r"(\"(?:[^\"\\]|\\.)*\"?|'(?:[^'\\]|\\.)*'?|[^&\s\"',}]+)",
            re.I,
        ),
        lambda match: _scrubbed(match.group(1), match.group(2)),
    ),
]
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    """Extra fields of a record (aiohttp's access log puts the request line there) are scrubbed too."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, int | float | bool):
        return value
    return redact(str(value))


class _Context(logging.Filter):
    """The request id of the request being served, unless the record names its own (the access log does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        out.update({k: _redact_value(v) for k, v in record.__dict__.items() if k not in _STANDARD and v is not None})
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Context())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
