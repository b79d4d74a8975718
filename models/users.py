"""Profiles, the user directory, admin changes, blocks and presence settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.auth import AuthService, Identity
from models.clock import now_iso
from models.documents import Page, User
from models.errors import Conflict, Forbidden, UserNotFound
from models.presence import PresenceService
from models.store.base import DuplicateKey, Store


@dataclass(frozen=True, slots=True)
class UserView:
    """A user as one viewer may see them (presence resolved for that viewer)."""

    user: User
    presence: str
    last_seen: str | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.user, name)


class UserService:
    def __init__(self, store: Store, auth: AuthService, presence: PresenceService) -> None:
        self.store = store
        self.auth = auth
        self.presence = presence

    async def view(self, user: User, viewer_id: str) -> UserView:
        return (await self.views([user], viewer_id))[0]

    async def views(self, users: list[User], viewer_id: str) -> list[UserView]:
        """Resolve presence and last seen as `viewer_id` may see them."""
        hidden_from = set(await self.store.blocked_ids_of(viewer_id, [u.id for u in users if u.id != viewer_id]))
        online = await self.presence.online_among(u.id for u in users)
        out = []
        for user in users:
            hidden = user.id in hidden_from
            concealed = hidden or (user.id != viewer_id and user.presence_setting == "invisible")
            presence = self.presence.presence_seen(user, viewer_id, user.id in online, hidden)
            out.append(UserView(user, presence, None if concealed else user.last_seen))
        return out

    async def get(self, user_id: str) -> User:
        user = await self.store.get_user(user_id)
        if user is None:
            raise UserNotFound()
        return user

    async def search(self, viewer: Identity, query: str | None, page: int, limit: int, emails: bool = True) -> Page:
        """`emails=False`: by name and username only (a door whose users never see emails must not probe them)."""
        result = await self.store.search_users(query, page, limit, emails)
        result.items = await self.views(result.items, viewer.user.id)
        return result

    async def _update(self, user_id: str, changes: dict[str, Any]) -> User:
        if not changes:
            return await self.get(user_id)
        try:
            user = await self.store.update_user(user_id, {**changes, "updated_at": now_iso()})
        except DuplicateKey as exc:
            raise Conflict(
                f"A user with this {exc.field} already exists", details={exc.field: ["Already taken."]}
            ) from None
        if user is None:
            raise UserNotFound()
        return user

    async def update_profile(self, identity: Identity, changes: dict[str, Any]) -> User:
        return await self._update(identity.user.id, changes)

    def _require_admin(self, identity: Identity) -> None:
        if identity.user.role != "admin":
            raise Forbidden("Only administrators may do this")

    async def admin_update(self, identity: Identity, user_id: str, changes: dict[str, Any]) -> User:
        self._require_admin(identity)
        return await self._update(user_id, changes)

    async def admin_delete(self, identity: Identity, user_id: str) -> None:
        self._require_admin(identity)
        if user_id == identity.user.id:
            raise Forbidden("Administrators cannot delete themselves")
        await self.auth.revoke_all(user_id)
        if not await self.store.delete_user(user_id):
            raise UserNotFound()

    async def set_blocked(self, identity: Identity, user_id: str, blocked: bool) -> None:
        if user_id == identity.user.id:
            raise Forbidden("You cannot block yourself")
        await self.get(user_id)
        await self.store.set_block(identity.user.id, user_id, now_iso(), blocked)

    async def set_presence(self, identity: Identity, setting: str) -> User:
        """Store the chosen presence (`online|away|busy|invisible`) and tell who may see it."""
        user = await self._update(identity.user.id, {"presence_setting": setting})
        if await self.presence.is_online(user.id):
            await self.presence.announce(user.id, connection_change=False)
        return user
