"""The one FHIR base: ``/fhir/R4/metadata`` (the platform's CapabilityStatement), and every
other ``/fhir/R4/<Type>...`` request forwarded, as it came, to the service owning ``<Type>``.

Errors the gateway answers itself (an unknown type, an owner not reachable) are
OperationOutcomes; everything else is the owner's answer, with its links moved to this base.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from akson_common.app import state_dependency
from akson_common.auth import smart_configuration
from akson_common.errors import BadRequest, UnsupportedMediaType
from akson_common.fhir import FHIR_JSON
from gateway.bundles import Run, batch, caller_headers, parse_bundle, transaction
from gateway.includes import Fetcher, add_includes, everything, split_query
from gateway.owners import (
    BASE_PATH,
    Answer,
    Owners,
    assemble,
    rewrite_links,
    rewrite_url,
    with_version,
)
from gateway.settings import GatewaySettings

router = APIRouter(tags=["fhir"])

OwnersDep = Annotated[Owners, Depends(state_dependency("owners", Owners))]
Settings = Annotated[
    GatewaySettings, Depends(state_dependency("gateway_settings", GatewaySettings))
]
ResourceType = Annotated[str, Path(pattern=r"^[A-Z][A-Za-z]{1,63}$")]
# the operations the gateway runs itself, across the owners
SYSTEM_OPERATIONS: list[dict[str, Any]] = [
    {
        "name": "everything",
        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    }
]


def gateway_base(request: Request, settings: Settings) -> str:
    if settings.public_base:
        return settings.public_base.rstrip("/")
    return f"{str(request.base_url).rstrip('/')}{BASE_PATH}"


Base = Annotated[str, Depends(gateway_base)]


@router.get(f"{BASE_PATH}/metadata")
async def capabilities(base: Base, owners: OwnersDep) -> JSONResponse:
    """The platform's CapabilityStatement, assembled from the owners' own (cached briefly)."""
    statement = assemble(await owners.statements(), base, SYSTEM_OPERATIONS)
    return JSONResponse(statement, media_type=FHIR_JSON)


@router.get(f"{BASE_PATH}/.well-known/smart-configuration", summary="SMART App Launch 2.x")
async def smart(settings: Settings) -> JSONResponse:
    """How apps are authorised on this FHIR base: at the identity service (the tokens'
    issuer), its authorize and token endpoints and SMART capabilities."""
    return JSONResponse(
        smart_configuration(settings.jwt_issuer), headers={"Cache-Control": "public, max-age=300"}
    )


def relay(answer: Answer, base: str) -> Response:
    """The owner's answer as the gateway's: links, fullUrls and Location moved to ``base``."""
    headers = dict(answer.headers)
    for name in ("location", "content-location"):
        if name in headers:
            headers[name] = with_version(rewrite_url(headers[name], base), headers.get("etag"))
    body = answer.body
    document = answer.json()
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        body = json.dumps(rewrite_links(document, base), separators=(",", ":")).encode()
    media = headers.pop("content-type", None)
    return Response(body, status_code=answer.status, headers=headers, media_type=media)


async def forward(
    request: Request,
    resource_type: str,
    owners: Owners,
    *,
    query: list[tuple[str, str]] | str | None = None,
) -> Answer:
    path = request.url.path
    last = path.rstrip("/").rsplit("/", 1)[-1]
    owner = await owners.owner_of(resource_type, last if last.startswith("$") else None)
    return await owners.invoker.call(
        owner,
        request.method,
        path,
        query=request.url.query if query is None else query,
        headers=request.headers,
        body=await request.body() if request.method in {"POST", "PUT", "PATCH"} else None,
    )


@router.get(f"{BASE_PATH}/Patient/{{patient}}/$everything", summary="Everything of a patient")
async def patient_everything(
    patient: Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")],
    request: Request,
    base: Base,
    owners: OwnersDep,
) -> JSONResponse:
    """The patient (master data) and every resource of every type searchable by patient
    (journal, consent), each owner asked with the caller's token: what the policy refuses is
    not there. A searchset; ``total`` counts what is in it."""
    fetcher = Fetcher(owners, caller_headers(request.headers))
    return JSONResponse(await everything(patient, fetcher, base), media_type=FHIR_JSON)


@router.post(f"{BASE_PATH}/", include_in_schema=False)
@router.post(BASE_PATH, summary="A batch or transaction Bundle (each entry at its type's owner)")
async def bundle(
    request: Request, base: Base, owners: OwnersDep, settings: Settings
) -> JSONResponse:
    """``batch``: each entry on its own, each with its own status. ``transaction``: all or
    nothing (every entry validated by its owner first; what was applied is undone when a later
    entry fails). See :mod:`gateway.bundles`."""
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media not in {FHIR_JSON, "application/json"}:
        raise UnsupportedMediaType(f"send a Bundle as {FHIR_JSON}")
    try:
        document = json.loads(await request.body())
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    kind, entries = parse_bundle(document, base, settings.max_bundle_entries)
    run = Run(owners, caller_headers(request.headers), base)
    answer = await (batch if kind == "batch" else transaction)(run, entries)
    return JSONResponse(answer, media_type=FHIR_JSON)


TYPE = f"{BASE_PATH}/{{resource_type}}"
BELOW = f"{BASE_PATH}/{{resource_type}}/{{rest:path}}"


@router.get(TYPE, summary="Search a type (at its owner; _include/_revinclude at theirs)")
async def search(
    resource_type: ResourceType, request: Request, base: Base, owners: OwnersDep
) -> Response:
    """The owner's searchset; ``_include`` and ``_revinclude`` are fetched by the gateway from
    their owners with the caller's token (what the policy refuses is not included)."""
    kept, includes, revincludes = split_query(request.url.query)
    if not (includes or revincludes):
        return relay(await forward(request, resource_type, owners), base)
    answer = await forward(request, resource_type, owners, query=kept)
    bundle = answer.json()
    if answer.status != 200 or not isinstance(bundle, dict):
        return relay(answer, base)
    fetcher = Fetcher(owners, caller_headers(request.headers))
    await add_includes(bundle, includes, revincludes, fetcher, base)
    body = json.dumps(bundle, separators=(",", ":")).encode()
    return relay(Answer(answer.status, answer.headers, body), base)


@router.post(TYPE, summary="Create (at the type's owner; If-None-Exist: conditional)")
async def create(
    resource_type: ResourceType, request: Request, base: Base, owners: OwnersDep
) -> Response:
    return relay(await forward(request, resource_type, owners), base)


@router.put(TYPE, summary="Conditional update (at the type's owner)")
async def conditional_update(
    resource_type: ResourceType, request: Request, base: Base, owners: OwnersDep
) -> Response:
    return relay(await forward(request, resource_type, owners), base)


@router.get(BELOW, summary="Read, vread, history, operations (at the type's owner)")
async def read(
    resource_type: ResourceType, rest: str, request: Request, base: Base, owners: OwnersDep
) -> Response:
    return relay(await forward(request, resource_type, owners), base)


@router.post(BELOW, summary="POST [type]/_search and operations (at the type's owner)")
async def operate(
    resource_type: ResourceType, rest: str, request: Request, base: Base, owners: OwnersDep
) -> Response:
    return relay(await forward(request, resource_type, owners), base)


@router.put(BELOW, summary="Update (at the type's owner)")
async def update(
    resource_type: ResourceType, rest: str, request: Request, base: Base, owners: OwnersDep
) -> Response:
    return relay(await forward(request, resource_type, owners), base)


@router.delete(BELOW, summary="Delete (at the type's owner)")
async def delete(
    resource_type: ResourceType, rest: str, request: Request, base: Base, owners: OwnersDep
) -> Response:
    return relay(await forward(request, resource_type, owners), base)
