"""Accounts and logins: register, log in, refresh, log out, passwords.

The one place that decides who a token belongs to (`authenticate`), used alike
by the REST middleware and the Socket.IO namespaces.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass

from models.clock import iso_in, new_id, now_iso
from models.documents import Role, Session, User
from models.errors import Conflict, RateLimited, Unauthenticated, WrongCredentials
from models.mail import Mailer
from models.notifier import Notifier
from models.passwords import PasswordHasher
from models.ratelimit import Limiter
from models.store.base import DuplicateKey, Store
from models.tokens import TokenSigner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller behind a valid access token."""

    user: User
    session_id: str


@dataclass(frozen=True, slots=True)
class TokenPair:
    token: str
    refresh_token: str


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    failures_per_account: int
    failures_per_address: int
    window: float


class AuthService:
    def __init__(
        self,
        store: Store,
        signer: TokenSigner,
        hasher: PasswordHasher,
        limiter: Limiter,
        mailer: Mailer,
        notifier: Notifier,
        policy: LoginPolicy,
        reset_ttl: int,
        reset_url: str,
    ) -> None:
        self.store = store
        self.signer = signer
        self.hasher = hasher
        self.limiter = limiter
        self.mailer = mailer
        self.notifier = notifier
        self.policy = policy
        self.reset_ttl = reset_ttl
        self.reset_url = reset_url

    async def register(
        self,
        *,
        username: str | None,
        email: str,
        password: str,
        phone: str | None = None,
        role: Role = "user",
        display_name: str | None = None,
        avatar: str | None = None,
    ) -> tuple[User, TokenPair]:
        """A new account and its first login.

        `username=None` (the `/api` door asks for a display name only): the server
        picks a free username made from the name or the email, so every account has
        the unique handle the other doors show and search.
        """
        now = now_iso()
        user = User(
            id=new_id(),
            email=email.lower(),
            username=username or _username_from(display_name, email),
            password_hash=await self.hasher.hash(password),
            phone=phone,
            avatar=avatar,
            role=role,
            created_at=now,
            updated_at=now,
            display_name=display_name,
        )
        for attempt in range(8):
            try:
                await self.store.insert_user(user)
                break
            except DuplicateKey as exc:
                if exc.field != "username" or username is not None or attempt == 7:
                    field = exc.field
                    raise Conflict(
                        f"{field.capitalize()} already exists", details={field: ["Already taken."]}
                    ) from None
                user.username = _username_from(display_name, email, suffix=True)
        return user, await self._start_session(user)

    async def login(self, email: str, password: str, address: str, rotates: bool = True) -> tuple[User, TokenPair]:
        """Same answer for an unknown email and a wrong password; failures are budgeted.

        `rotates=False`: a login whose refresh token stays the same when used (the
        `/api` door's clients keep the one they got); logging out still ends it.
        """
        email = email.lower()
        account_key, address_key = f"login:account:{email}", f"login:address:{address}"
        # Check both budgets and count the attempt as a failure in one step, before the hash
        # runs, so that parallel guesses (here or in another process) cannot all pass the
        # check; a success takes it back.
        wait = await self.limiter.hit_if_allowed(
            [(account_key, self.policy.failures_per_account), (address_key, self.policy.failures_per_address)],
            self.policy.window,
        )
        if wait is not None:
            raise RateLimited(wait, "Too many failed logins; try again later")
        try:
            user = await self.store.get_user_by_email(email)
            ok = await self.hasher.verify(password, user.password_hash if user else None) and user is not None
        except BaseException:
            await self.limiter.release(account_key)
            await self.limiter.release(address_key)
            raise
        if not ok or user is None:
            raise WrongCredentials()
        await self.limiter.reset(account_key)
        await self.limiter.release(address_key)
        return user, await self._start_session(user, rotates)

    async def _start_session(self, user: User, rotates: bool = True) -> TokenPair:
        session = Session(
            id=new_id(),
            user_id=user.id,
            refresh_jti=new_id(),
            created_at=now_iso(),
            expires_at=iso_in(self.signer.refresh_ttl),
        )
        await self.store.insert_session(session)
        return self._tokens(user.id, session.id, session.refresh_jti, rotates)

    def _tokens(self, user_id: str, session_id: str, refresh_jti: str, rotates: bool = True) -> TokenPair:
        return TokenPair(
            token=self.signer.issue("access", user_id, session_id),
            refresh_token=self.signer.issue("refresh", user_id, session_id, jti=refresh_jti, rotates=rotates),
        )

    async def authenticate(self, token: str | None) -> Identity:
        """The user and login behind an access token; `Unauthenticated` otherwise."""
        if not token:
            raise Unauthenticated("Missing token")
        claims = self.signer.decode(token, "access")
        session = await self.store.get_session(claims.session_id)
        if session is None or session.revoked_at is not None or session.user_id != claims.user_id:
            raise Unauthenticated("Token has been revoked")
        user = await self.store.get_user(claims.user_id)
        if user is None:
            raise Unauthenticated("Token has been revoked")
        return Identity(user, session.id)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate the refresh token; a token used twice revokes the whole login.

        A login that does not rotate (`login(rotates=False)`) answers a new access
        token beside the same refresh token, for as long as the login stands.
        """
        claims = self.signer.decode(refresh_token, "refresh")
        if not claims.rotates:
            session = await self.store.get_session(claims.session_id)
            if (
                session is None
                or session.revoked_at is not None
                or session.refresh_jti != claims.jti
                or session.user_id != claims.user_id
                or await self.store.get_user(claims.user_id) is None
            ):
                raise Unauthenticated("Refresh token is invalid or its login has ended")
            return TokenPair(self.signer.issue("access", claims.user_id, claims.session_id), refresh_token)
        new_jti = new_id()
        rotated = await self.store.rotate_refresh(
            claims.session_id, claims.jti, new_jti, iso_in(self.signer.refresh_ttl)
        )
        if rotated and await self.store.get_user(claims.user_id) is not None:
            return self._tokens(claims.user_id, claims.session_id, new_jti)
        session = await self.store.get_session(claims.session_id)
        if session is not None and session.revoked_at is None:
            log.warning("refresh token reuse detected; login revoked", extra={"session_id": session.id})
            await self._revoke([session.id])
        raise Unauthenticated("Refresh token is invalid or was already used")

    async def logout(self, identity: Identity) -> None:
        await self._revoke([identity.session_id])

    async def _revoke(self, session_ids: list[str]) -> None:
        now = now_iso()
        for session_id in session_ids:
            await self.store.revoke_session(session_id, now)
        await self.notifier.end_sessions(session_ids)

    async def revoke_all(self, user_id: str, keep: str | None = None) -> None:
        revoked = await self.store.revoke_user_sessions(user_id, now_iso(), keep=keep)
        await self.notifier.end_sessions(revoked)

    async def change_password(self, identity: Identity, current: str, new: str) -> None:
        """Keeps the caller's own login; every other one is revoked."""
        user = await self.store.get_user(identity.user.id)
        if user is None or not await self.hasher.verify(current, user.password_hash):
            raise WrongCredentials("Current password is wrong")
        await self.store.update_user(user.id, {"password_hash": await self.hasher.hash(new), "updated_at": now_iso()})
        await self.revoke_all(user.id, keep=identity.session_id)

    async def forgot_password(self, email: str) -> None:
        """Send a single-use reset token when the account exists; say nothing either way."""
        user = await self.store.get_user_by_email(email.lower())
        if user is None:
            return
        token = secrets.token_urlsafe(32)
        await self.store.insert_reset_token(_digest(token), user.id, iso_in(self.reset_ttl))
        minutes = self.reset_ttl // 60
        body = (
            f"Hello {user.username},\n\nSomeone asked to reset the password of your WhatsChat account.\n"
            f"Open this link within {minutes} minutes to choose a new one:\n\n"
            f"{self.reset_url.replace('{token}', token)}\n\nOr use this reset token: {token}\n\n"
            "If it was not you, ignore this mail; your password stays as it is.\n"
        )
        try:
            await self.mailer.send(user.email, "Reset your WhatsChat password", body)
        except OSError:
            log.exception("could not send the password reset mail")

    async def reset_password(self, token: str, new: str) -> None:
        user_id = await self.store.consume_reset_token(_digest(token), now_iso())
        if user_id is None:
            raise Unauthenticated("Reset token is invalid, used or expired")
        changed = await self.store.update_user(
            user_id, {"password_hash": await self.hasher.hash(new), "updated_at": now_iso()}
        )
        if changed is None:  # the account was deleted after the mail went out
            raise Unauthenticated("Reset token is invalid, used or expired")
        await self.revoke_all(user_id)


def _digest(token: str) -> str:
    """Reset tokens are stored hashed: a copy of the database cannot reset passwords."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_NOT_HANDLE = re.compile(r"[^A-Za-z0-9_]+")


def _username_from(name: str | None, email: str, suffix: bool = False) -> str:
    """A username (3 to 20 letters, digits, underscores) from a display name or an email's local part.

    The first try is the plain handle; with `suffix`, four random hex digits make
    a taken one free (the caller retries a few times).
    """
    base = _NOT_HANDLE.sub("_", (name or "").strip()).strip("_") or _NOT_HANDLE.sub("_", email.split("@")[0]).strip("_")
    base = (base or "user")[:15]
    if len(base) < 3:
        base = f"{base}_user"[:15]
    return f"{base}_{secrets.token_hex(2)}" if suffix else base
