"""The app registry: register, list, read, change and disable apps (its routes: ``api.py``).

Every call asks the policy first (type ``App``, purpose ``administration``): only a subject
with the ``admin`` role is allowed, and no decision means no access (fail closed).
"""

from __future__ import annotations

from akson_common.auth import Principal
from akson_common.errors import Conflict, NotFound
from akson_common.policy import Action, PolicyContext, PolicyEnforcementPoint, ResourceRef
from identity.models import AppCreate, AppPublic, AppWrite, ClientRegistration
from identity.store import IdentityStore

ADMINISTRATION = PolicyContext(purpose="administration")


def public(registration: ClientRegistration) -> AppPublic:
    return AppPublic.model_validate(registration.model_dump())


class AppRegistry:
    def __init__(self, store: IdentityStore, pep: PolicyEnforcementPoint) -> None:
        self.store, self.pep = store, pep

    async def _ask(self, principal: Principal, action: Action, client_id: str | None) -> None:
        resource = ResourceRef(type="App", id=client_id)
        await self.pep.enforce(principal, action, resource, ADMINISTRATION)

    async def _registered(self, client_id: str) -> ClientRegistration:
        registration = await self.store.clients.get_one_or_none(client_id)
        if registration is None:
            raise NotFound("no app with this client id")
        return registration

    async def register(self, principal: Principal, body: AppCreate) -> AppPublic:
        await self._ask(principal, "write", body.client_id)
        registration = body.registration(body.client_id)
        if not await self.store.clients.insert(registration):
            raise Conflict("an app with this client id is registered")
        return public(registration)

    async def every(self, principal: Principal) -> list[AppPublic]:
        await self._ask(principal, "search", None)
        return [public(r) for r in await self.store.clients.find({}, limit=1000)]

    async def one(self, principal: Principal, client_id: str) -> AppPublic:
        await self._ask(principal, "read", client_id)
        return public(await self._registered(client_id))

    async def change(self, principal: Principal, client_id: str, body: AppWrite) -> AppPublic:
        """Change an app's registration; its status stays."""
        await self._ask(principal, "write", client_id)
        existing = await self._registered(client_id)
        if existing.roles or existing.organisation:
            raise Conflict("a platform client is changed through its boot-time seed, not here")
        registration = body.registration(client_id, existing.status)
        await self.store.clients.upsert(registration)
        return public(registration)

    async def disable(self, principal: Principal, client_id: str) -> AppPublic:
        """No new tokens, no refresh."""
        await self._ask(principal, "write", client_id)
        existing = await self._registered(client_id)
        disabled = existing.model_copy(update={"status": "disabled"})
        await self.store.clients.upsert(disabled)
        await self.store.revoke_app_refresh_tokens(client_id)
        return public(disabled)
