"""Consent HTTP API: thin routes; every access asks the policy first, in the service
(``ConsentAccess``).

- ``POST /directives`` registers a directive: 201, ``Location`` and ``ETag``;
- ``GET /directives/{id}`` (``ETag``) and ``GET /directives?patient=`` (every directive of the
  patient, withdrawn ones too, oldest first; ``status`` narrows it);
- ``POST /directives/{id}/withdraw`` withdraws one (status ``withdrawn``; nothing is deleted),
  optionally conditional on ``If-Match``: 412 when the version differs, 409 when it is already
  withdrawn or changed meanwhile;
- ``GET /fhir/R4/Consent/{id}`` and ``GET /fhir/R4/Consent?patient=`` (searchset): the FHIR view.

Personnel (and systems) act on the patient's behalf and must give a ``reason`` (422 without);
the patient acting on their own record need not. The policy decides who may act at all: the
patient on their own record, personnel with a care relation (resource type ``Consent``,
category ``consent``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse, Response

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal
from akson_common.errors import PROTECTED_RESPONSES, error_response
from akson_common.etags import etag, expected_version
from akson_common.fhir import FHIR_JSON, capability_statement, fhir_base, resource_capability
from akson_common.policy import (
    written_unread,
)
from consent import fhir
from consent.models import Directive, DirectiveIn, DirectiveList, DirectiveStatus, WithdrawalIn
from consent.service import ConsentAccess

router = APIRouter(tags=["consent"], responses=PROTECTED_RESPONSES)
NATIONAL_ID = r"^\d{11}$"

Access = Annotated[ConsentAccess, Depends(state_dependency("access", ConsentAccess))]
Patient = Annotated[str, Query(pattern=NATIONAL_ID)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


NOT_FOUND = error_response(404, "No such directive (or not yours to know about: the same answer)")
INVALID = error_response(422, "Invalid directive, or no reason given on the patient's behalf")
CHANGE = {
    **NOT_FOUND,
    **INVALID,
    **error_response(409, "Already withdrawn or changed meanwhile"),
    **error_response(412, "If-Match names another version"),
}


def _json(directive: Directive, status_code: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(
        directive.model_dump(mode="json"),
        status_code=status_code,
        headers={"ETag": etag(directive.version), **headers},
    )


def _fhir(resource: Any, **headers: str) -> JSONResponse:
    return JSONResponse(
        resource.model_dump(mode="json", exclude_none=True), media_type=FHIR_JSON, headers=headers
    )


@router.post(
    "/directives",
    status_code=status.HTTP_201_CREATED,
    response_model=Directive,
    responses={**INVALID, **error_response(409, "The patient is deceased")},
)
async def register_directive(
    directive: Annotated[DirectiveIn, Body()], principal: CurrentPrincipal, access: Access
) -> Response:
    """Register a block, reservation or sharing consent for a patient."""
    saved = await access.register(directive, principal)
    location = f"/directives/{saved.id}"
    if not await access.read_back(saved, principal):
        return Response(
            status_code=201, headers={"ETag": etag(saved.version), "Location": location}
        )
    return _json(saved, 201, Location=location)


@router.get("/directives/{directive_id}", response_model=Directive, responses=NOT_FOUND)
async def get_directive(
    directive_id: str, principal: CurrentPrincipal, access: Access
) -> JSONResponse:
    return _json(await access.readable(directive_id, "read", principal))


@router.get("/directives", response_model=DirectiveList)
async def list_directives(
    patient: Patient,
    principal: CurrentPrincipal,
    access: Access,
    directive_status: Annotated[DirectiveStatus | None, Query(alias="status")] = None,
) -> DirectiveList:
    """Every directive of one patient, oldest first; ``status`` narrows the list."""
    directives = await access.for_patient(patient, principal)
    return DirectiveList(
        items=[d for d in directives if directive_status in (None, d.status)],
    )


@router.post("/directives/{directive_id}/withdraw", response_model=Directive, responses=CHANGE)
async def withdraw_directive(
    directive_id: str,
    principal: CurrentPrincipal,
    access: Access,
    if_match: IfMatch = None,
    withdrawal: Annotated[WithdrawalIn | None, Body()] = None,
) -> Response:
    """Withdraw a directive (its status becomes ``withdrawn``; it stays on record)."""
    expected = expected_version(if_match)
    changed = await access.withdraw(directive_id, principal, withdrawal or WithdrawalIn(), expected)
    if not await access.read_back(changed, principal):
        return written_unread(200, {"id": changed.id}, {"ETag": etag(changed.version)})
    return _json(changed)


# -- FHIR ------------------------------------------------------------------------------------


@router.get("/fhir/R4/metadata", tags=["fhir"])
async def capabilities(request: Request) -> JSONResponse:
    """The CapabilityStatement of the Consent view (the gateway assembles the platform's)."""
    consent = resource_capability(
        "Consent", ["read", "search-type"], [("patient", "reference")], versioning="versioned"
    )
    statement = capability_statement(
        "Akson consent (fhir.resources R4B models, wire-compatible with R4 for Consent)",
        fhir_base(request),
        [consent],
    )
    return JSONResponse(statement, media_type=FHIR_JSON)


@router.get("/fhir/R4/Consent/{directive_id}", tags=["fhir"], responses=NOT_FOUND)
async def read_consent(
    directive_id: str, principal: CurrentPrincipal, access: Access
) -> JSONResponse:
    directive = await access.readable(directive_id, "read", principal)
    return _fhir(fhir.consent_resource(directive), ETag=etag(directive.version))


@router.get("/fhir/R4/Consent", tags=["fhir"])
async def search_consents(
    request: Request,
    patient: Annotated[str, Query(pattern=r"^(Patient/)?\d{11}$")],
    principal: CurrentPrincipal,
    access: Access,
) -> JSONResponse:
    """The patient's directives as a searchset Bundle (``patient``: ``[Patient/]<national id>``)."""
    directives = await access.for_patient(patient.removeprefix("Patient/"), principal)
    base = str(request.base_url).rstrip("/")
    return _fhir(fhir.searchset(directives, base))
