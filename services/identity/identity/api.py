"""Identity's HTTP surface: discovery, the JWKS and the token endpoint (thin; logic in service)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from akson_common.app import state_dependency
from akson_common.errors import UnsupportedMediaType
from identity.keys import ALGORITHM, SigningKeys
from identity.models import CLIENT_CREDENTIALS, TOKEN_EXCHANGE, TokenResponse
from identity.service import ASSERTION_ALGORITHMS, OAuthError, TokenService

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


@router.get("/.well-known/openid-configuration", summary="OpenID Provider metadata")
async def discovery(service: TokenServiceDep) -> dict[str, Any]:
    return {
        "issuer": service.issuer,
        "jwks_uri": f"{service.issuer}/jwks",
        "token_endpoint": service.token_endpoint,
        "grant_types_supported": [TOKEN_EXCHANGE, CLIENT_CREDENTIALS],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }


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
    summary="Token exchange (RFC 8693) and client credentials with private_key_jwt (RFC 7523)",
)
async def token(request: Request, service: TokenServiceDep) -> JSONResponse:
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        raise UnsupportedMediaType("the token endpoint takes application/x-www-form-urlencoded")
    try:  # the input guard refuses more than 20 fields first; this is the route's own bound
        pairs = parse_qsl((await request.body()).decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:
        raise OAuthError("invalid_request", "too many parameters") from None
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise OAuthError("invalid_request", "a parameter is repeated")
    issued = await service.token(dict(pairs))
    return JSONResponse(issued.model_dump(exclude_none=True), headers=NO_STORE)


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
