"""Signed tokens (JWT, HS256) for access and refresh.

Both kinds carry `sid`, the login (session) they belong to; revoking a login in
the store revokes all its tokens at once, and that revocation lives in the store,
so it survives restarts and is seen by every process sharing it. Refresh tokens
carry a `jti` that the store rotates on every use: presenting an old one is
reuse, and revokes the whole login. A login made through the `/api` door keeps
its refresh token (its clients never store a new one): its tokens say so
(`fix`), signed, so a client cannot turn rotation off for itself.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt

from models.clock import new_id
from models.errors import TokenExpired, Unauthenticated

TokenKind = Literal["access", "refresh"]
ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    session_id: str
    kind: TokenKind
    jti: str
    expires: int
    rotates: bool = True  # refresh tokens: whether using one replaces it (see `AuthService.refresh`)


class TokenSigner:
    def __init__(self, secret: str, access_ttl: int, refresh_ttl: int) -> None:
        self._secret = secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue(
        self, kind: TokenKind, user_id: str, session_id: str, jti: str | None = None, rotates: bool = True
    ) -> str:
        now = int(time.time())
        ttl = self.access_ttl if kind == "access" else self.refresh_ttl
        payload: dict[str, object] = {
            "sub": user_id,
            "sid": session_id,
            "typ": kind,
            "jti": jti or new_id(),
            "iat": now,
            "exp": now + ttl,
        }
        if not rotates:
            payload["fix"] = True
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str, kind: TokenKind) -> Claims:
        """Verified claims, or `Unauthenticated` for anything wrong with the token."""
        try:
            payload = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "iat", "sub", "sid", "typ"]}
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.PyJWTError:
            raise Unauthenticated("Invalid token") from None
        if payload.get("typ") != kind or not all(isinstance(payload.get(key), str) for key in ("sub", "sid", "jti")):
            raise Unauthenticated("Invalid token")
        rotates = payload.get("fix") is not True
        return Claims(payload["sub"], payload["sid"], kind, payload["jti"], int(payload["exp"]), rotates)


def load_or_create_secret(configured: str, data_dir: Path) -> tuple[str, bool]:
    """The configured secret, or one generated once and kept in the data folder.

    Returns the secret and whether it was generated (the caller warns: production
    must configure its own so that every process and machine shares it). The file
    is private (0600) from its first byte, and processes that start together all
    end up with the one secret that reached the disk first.
    """
    if configured:
        return configured, False
    path = data_dir / "jwt_secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".jwt_secret.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(secrets.token_urlsafe(48))
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(tmp, path)  # atomic, and fails if another process was first
            except FileExistsError:
                pass  # use the secret of the process that was first
            except OSError:
                os.replace(tmp, path)  # a file system without hard links: still atomic
        finally:
            tmp.unlink(missing_ok=True)
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise ValueError(f"{path} is damaged (empty or too short); delete it to generate a new one")
    return secret, True
