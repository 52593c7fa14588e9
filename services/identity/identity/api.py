"""Identity's HTTP surface: discovery, the JWKS, the token endpoint and SMART App Launch's
authorize, login callback, patient picker and EHR launch (thin; logic in service and smart)."""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Path, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from akson_common.app import state_dependency
from akson_common.auth import (
    SMART_GRANT_TYPES,
    SMART_SCOPES,
    CurrentPrincipal,
    smart_configuration,
)
from akson_common.errors import UnsupportedMediaType, error_response
from identity.apps import AppRegistry
from identity.keys import ALGORITHM, SigningKeys
from identity.models import CLIENT_ID_PATTERN, AppCreate, AppPublic, AppWrite, TokenResponse
from identity.service import ASSERTION_ALGORITHMS, OAuthError, TokenService
from identity.smart import (
    AUTHORIZATION_CODE,
    PICK,
    REFRESH_TOKEN,
    AppLaunch,
    LaunchRequest,
    Redirect,
)

router = APIRouter(tags=["identity"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "RFC 6749 error: invalid_grant, invalid_request, invalid_scope, ...",
        "content": {"application/json": {"schema": OAUTH_ERROR_SCHEMA}},
    },
    401: {
        "description": "RFC 6749 error: invalid_client",
        "content": {"application/json": {"schema": OAUTH_ERROR_SCHEMA}},
    },
}


TokenServiceDep = Annotated[TokenService, Depends(state_dependency("token_service", TokenService))]
SigningKeysDep = Annotated[SigningKeys, Depends(state_dependency("signing_keys", SigningKeys))]
AppLaunchDep = Annotated[AppLaunch, Depends(state_dependency("app_launch", AppLaunch))]


@router.get("/.well-known/openid-configuration", summary="OpenID Provider metadata")
async def discovery(service: TokenServiceDep) -> dict[str, Any]:
    return {
        "issuer": service.issuer,
        "jwks_uri": f"{service.issuer}/jwks",
        "token_endpoint": service.token_endpoint,
        "authorization_endpoint": f"{service.issuer}/authorize",
        "grant_types_supported": list(SMART_GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(SMART_SCOPES),
        "subject_types_supported": ["public"],
    }


@router.get("/.well-known/smart-configuration", summary="SMART App Launch 2.x configuration")
async def smart(service: TokenServiceDep) -> dict[str, Any]:
    return smart_configuration(service.issuer)


@router.get(
    "/authorize",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses=OAUTH_ERRORS,
    summary="SMART authorisation (code + PKCE S256): on to the upstream login",
)
async def authorize(request: Request, launch: AppLaunchDep) -> RedirectResponse:
    try:
        target = await launch.authorize(_single(request))
    except Redirect as back:
        target = back.url
    return RedirectResponse(target, status_code=303, headers=NO_STORE)


@router.get(
    "/authorize/callback",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses=OAUTH_ERRORS,
    summary="Back from the upstream login: on to the app with a code",
)
async def authorize_callback(request: Request, launch: AppLaunchDep) -> RedirectResponse:
    target = await launch.logged_in(_single(request))
    return RedirectResponse(target, status_code=303, headers=NO_STORE)


PICKER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Choose the patient</title></head>
<body>
<h1>Choose the patient</h1>
<p>The app will be able to see only what you may see of this patient.</p>
<form method="post" action="patient">
<input type="hidden" name="pick" value="{pick}">
<label>Patient (national id) <input name="patient" required></label>
<button type="submit">Continue</button>
</form>
</body></html>
"""


@router.get(
    "/authorize/patient",
    response_class=HTMLResponse,
    responses=OAUTH_ERRORS,
    summary="A practitioner's standalone launch: the patient picker",
)
async def patient_picker(request: Request) -> HTMLResponse:
    pick = _single(request).get("pick", "")
    if not PICK.match(pick):
        raise OAuthError("invalid_request", "no patient choice to make")
    return HTMLResponse(PICKER_PAGE.format(pick=html.escape(pick)), headers=NO_STORE)


@router.post(
    "/authorize/patient",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses=OAUTH_ERRORS,
    summary="The practitioner's choice of patient: on to the app with a code",
)
async def patient_picked(request: Request, launch: AppLaunchDep) -> RedirectResponse:
    form = await _form(request)
    target = await launch.picked(form.get("pick", ""), form.get("patient", ""))
    return RedirectResponse(target, status_code=303, headers=NO_STORE)


@router.post(
    "/launch",
    status_code=status.HTTP_201_CREATED,
    summary="An EHR launch: a launch id bound to a patient (and encounter), for this user",
)
async def create_launch(
    body: LaunchRequest, principal: CurrentPrincipal, launch: AppLaunchDep
) -> dict[str, str]:
    return {"launch": await launch.launch(principal, body)}


def _single(request: Request) -> dict[str, str]:
    """The query's parameters; a repeated one is an error (OAuth 2.0 §3.1)."""
    names = [name for name, _ in request.query_params.multi_items()]
    if len(names) != len(set(names)):
        raise OAuthError("invalid_request", "a parameter is repeated")
    return dict(request.query_params)


@router.get(
    "/jwks",
    summary="The public signing keys: next, active and still-valid retired",
    responses={200: {"content": {"application/jwk-set+json": {"schema": {"type": "object"}}}}},
)
async def jwks(keys: SigningKeysDep, service: TokenServiceDep) -> JSONResponse:
    # HTTP caches must not hold the JWKS for a good part of a rotation's publication lead
    max_age = int(min(300.0, service.settings.key_publish_lead_seconds / 4))
    return JSONResponse(
        await keys.jwks(),
        media_type="application/jwk-set+json",
        headers={"Cache-Control": f"public, max-age={max_age}"},
    )


@router.post(
    "/token",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    responses=OAUTH_ERRORS,
    summary="Authorization code (PKCE), refresh, token exchange (RFC 8693) and client "
    "credentials with private_key_jwt (RFC 7523)",
)
async def token(request: Request, service: TokenServiceDep, launch: AppLaunchDep) -> JSONResponse:
    form = await _form(request)
    if form.get("grant_type") in (AUTHORIZATION_CODE, REFRESH_TOKEN):
        issued = await launch.token(form)
    else:
        issued = await service.token(form)
    return JSONResponse(issued.model_dump(exclude_none=True), headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    """An OAuth endpoint's form: url-encoded, each parameter at most once (RFC 6749 §3.2)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        raise UnsupportedMediaType("this endpoint takes application/x-www-form-urlencoded")
    try:  # the input guard refuses more than 20 fields first; this is the route's own bound
        pairs = parse_qsl((await request.body()).decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:
        raise OAuthError("invalid_request", "too many parameters") from None
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise OAuthError("invalid_request", "a parameter is repeated")
    return dict(pairs)


def install_oauth_errors(app: FastAPI) -> None:
    async def on_oauth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OAuthError)
        headers = dict(NO_STORE)
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer error="invalid_client"'
        return JSONResponse(
            {"error": exc.error, "error_description": exc.description},
            status_code=exc.status,
            headers=headers,
        )

    app.add_exception_handler(OAuthError, on_oauth_error)


# -- the app registry (admins) ------------------------------------------------------------------

apps_router = APIRouter(prefix="/apps", tags=["app registry"])
Registry = Annotated[AppRegistry, Depends(state_dependency("app_registry", AppRegistry))]
ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN)]


@apps_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_response(409, "An app with this client id is registered"),
    summary="Register an app",
)
async def create_app(body: AppCreate, principal: CurrentPrincipal, apps: Registry) -> AppPublic:
    return await apps.register(principal, body)


@apps_router.get("", summary="Every registered app")
async def list_apps(principal: CurrentPrincipal, apps: Registry) -> list[AppPublic]:
    return await apps.every(principal)


@apps_router.get("/{client_id}", summary="One registered app")
async def read_app(client_id: ClientId, principal: CurrentPrincipal, apps: Registry) -> AppPublic:
    return await apps.one(principal, client_id)


@apps_router.put(
    "/{client_id}",
    responses=error_response(409, "A platform client: changed through its boot-time seed"),
    summary="Change an app's registration (its status stays)",
)
async def update_app(
    client_id: ClientId, body: AppWrite, principal: CurrentPrincipal, apps: Registry
) -> AppPublic:
    return await apps.change(principal, client_id, body)


@apps_router.post("/{client_id}/disable", summary="Disable an app: no new tokens, no refresh")
async def disable_app(
    client_id: ClientId, principal: CurrentPrincipal, apps: Registry
) -> AppPublic:
    return await apps.disable(principal, client_id)
