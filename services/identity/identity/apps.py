"""The app registry's admin API: register, list, read, change and disable apps.

Every call asks the policy first (type ``App``, purpose ``administration``): only a subject
with the ``admin`` role is allowed, and no decision means no access (fail closed).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal, Principal
from akson_common.errors import Conflict, NotFound, error_response
from akson_common.policy import Action, Policy, PolicyContext, PolicyEnforcementPoint, ResourceRef
from identity.models import CLIENT_ID_PATTERN, AppCreate, AppPublic, AppWrite, ClientRegistration
from identity.store import IdentityStore

router = APIRouter(prefix="/apps", tags=["app registry"])
ADMINISTRATION = PolicyContext(purpose="administration")
StoreDep = Annotated[IdentityStore, Depends(state_dependency("identity_store", IdentityStore))]
ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN)]


async def ask(
    policy: PolicyEnforcementPoint, principal: Principal, action: Action, client_id: str | None
) -> None:
    await policy.enforce(principal, action, ResourceRef(type="App", id=client_id), ADMINISTRATION)


def public(registration: ClientRegistration) -> AppPublic:
    return AppPublic.model_validate(registration.model_dump())


async def registered(store: IdentityStore, client_id: str) -> ClientRegistration:
    registration = await store.clients.get_one_or_none(client_id)
    if registration is None:
        raise NotFound("no app with this client id")
    return registration


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_response(409, "An app with this client id is registered"),
    summary="Register an app",
)
async def create_app(
    body: AppCreate, principal: CurrentPrincipal, policy: Policy, store: StoreDep
) -> AppPublic:
    await ask(policy, principal, "write", body.client_id)
    registration = body.registration(body.client_id)
    if not await store.clients.insert(registration):
        raise Conflict("an app with this client id is registered")
    return public(registration)


@router.get("", summary="Every registered app")
async def list_apps(
    principal: CurrentPrincipal, policy: Policy, store: StoreDep
) -> list[AppPublic]:
    await ask(policy, principal, "search", None)
    return [public(r) for r in await store.clients.find({}, limit=1000)]


@router.get("/{client_id}", summary="One registered app")
async def read_app(
    client_id: ClientId, principal: CurrentPrincipal, policy: Policy, store: StoreDep
) -> AppPublic:
    await ask(policy, principal, "read", client_id)
    return public(await registered(store, client_id))


@router.put(
    "/{client_id}",
    responses=error_response(409, "A platform client: changed through its boot-time seed"),
    summary="Change an app's registration (its status stays)",
)
async def update_app(
    client_id: ClientId,
    body: AppWrite,
    principal: CurrentPrincipal,
    policy: Policy,
    store: StoreDep,
) -> AppPublic:
    await ask(policy, principal, "write", client_id)
    existing = await registered(store, client_id)
    if existing.roles or existing.organisation:
        raise Conflict("a platform client is changed through its boot-time seed, not here")
    registration = body.registration(client_id, existing.status)
    await store.clients.upsert(registration)
    return public(registration)


@router.post("/{client_id}/disable", summary="Disable an app: no new tokens, no refresh")
async def disable_app(
    client_id: ClientId, principal: CurrentPrincipal, policy: Policy, store: StoreDep
) -> AppPublic:
    await ask(policy, principal, "write", client_id)
    existing = await registered(store, client_id)
    disabled = existing.model_copy(update={"status": "disabled"})
    await store.clients.upsert(disabled)
    await store.revoke_app_refresh_tokens(client_id)
    return public(disabled)
