"""Consent HTTP API: thin routes, every access through the policy first.

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
from akson_common.auth import CurrentPrincipal, Principal
from akson_common.errors import PROTECTED_RESPONSES, NotFound, error_response
from akson_common.etags import etag, expected_version
from akson_common.fhir import FHIR_JSON, capability_statement, fhir_base, resource_capability
from akson_common.policy import (
    Action,
    Decision,
    Policy,
    PolicyContext,
    PolicyEnforcementPoint,
    ResourceRef,
    written_unread,
)
from akson_common.projections import PatientProjections
from consent import fhir
from consent.models import Directive, DirectiveIn, DirectiveList, DirectiveStatus, WithdrawalIn
from consent.service import ConsentDirectives, policy_directives

router = APIRouter(tags=["consent"], responses=PROTECTED_RESPONSES)
RESOURCE_TYPE = "Consent"
CATEGORY = "consent"
NATIONAL_ID = r"^\d{11}$"

Service = Annotated[ConsentDirectives, Depends(state_dependency("directives", ConsentDirectives))]
ReadModels = Annotated[
    PatientProjections, Depends(state_dependency("projections", PatientProjections))
]
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


async def patient_context(
    patient: str, directives: list[Directive], read_models: PatientProjections
) -> PolicyContext:
    """The patient's care relations, registry facts and ``directives`` (so the policy can,
    e.g., refuse a blocked practitioner)."""
    return PolicyContext(
        care_relations=await read_models.active_care_relations(patient),
        directives=policy_directives(directives),
        patient=await read_models.patient_facts(patient),
    )


def consent_ref(patient: str | None, directive_id: str | None = None) -> ResourceRef:
    return ResourceRef(type=RESOURCE_TYPE, patient=patient, category=CATEGORY, id=directive_id)


async def about_patient(
    policy: PolicyEnforcementPoint,
    principal: Principal,
    action: Action,
    patient: str,
    directives: list[Directive],
    read_models: PatientProjections,
) -> Decision:
    """Ask about a patient's directives as a whole (register, list): 403 when refused."""
    context = await patient_context(patient, directives, read_models)
    return await policy.enforce(principal, action, consent_ref(patient), context)


async def readable(
    directive_id: str,
    action: Action,
    principal: Principal,
    policy: PolicyEnforcementPoint,
    service: ConsentDirectives,
    read_models: PatientProjections,
) -> Directive:
    """The directive if the caller may ``action`` it; 404 alike when unknown or refused."""
    directive = await service.get(directive_id)
    if directive is None:
        resource, context = ResourceRef(type=RESOURCE_TYPE, id=directive_id), PolicyContext()
    else:
        directives = await service.for_patient(directive.patient)
        context = await patient_context(directive.patient, directives, read_models)
        resource = consent_ref(directive.patient, directive_id)
    await policy.visible(
        principal,
        action,
        resource,
        context,
        known=directive is not None,
        not_found=NotFound("no such directive"),
    )
    assert directive is not None  # visible raised for an unknown one
    return directive


async def read_back(
    directive: Directive,
    principal: Principal,
    policy: PolicyEnforcementPoint,
    service: ConsentDirectives,
    read_models: PatientProjections,
) -> bool:
    """A response body is a read: may the writer read the directive it wrote?"""
    directives = await service.for_patient(directive.patient)
    context = await patient_context(directive.patient, directives, read_models)
    resource = consent_ref(directive.patient, directive.id)
    return await policy.read_back(principal, resource, context) is not None


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
    directive: Annotated[DirectiveIn, Body()],
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    read_models: ReadModels,
) -> Response:
    """Register a block, reservation or sharing consent for a patient."""
    directives = await service.for_patient(directive.patient)
    await about_patient(policy, principal, "write", directive.patient, directives, read_models)
    patient = await read_models.patient_facts(directive.patient)
    saved = await service.register(directive, principal, patient)
    location = f"/directives/{saved.id}"
    if not await read_back(saved, principal, policy, service, read_models):
        return Response(
            status_code=201, headers={"ETag": etag(saved.version), "Location": location}
        )
    return _json(saved, 201, Location=location)


@router.get("/directives/{directive_id}", response_model=Directive, responses=NOT_FOUND)
async def get_directive(
    directive_id: str,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    read_models: ReadModels,
) -> JSONResponse:
    directive = await readable(directive_id, "read", principal, policy, service, read_models)
    return _json(directive)


@router.get("/directives", response_model=DirectiveList)
async def list_directives(
    patient: Patient,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    read_models: ReadModels,
    directive_status: Annotated[DirectiveStatus | None, Query(alias="status")] = None,
) -> DirectiveList:
    """Every directive of one patient, oldest first; ``status`` narrows the list."""
    directives = await service.for_patient(patient)
    await about_patient(policy, principal, "search", patient, directives, read_models)
    return DirectiveList(
        items=[d for d in directives if directive_status in (None, d.status)],
    )


@router.post("/directives/{directive_id}/withdraw", response_model=Directive, responses=CHANGE)
async def withdraw_directive(
    directive_id: str,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    read_models: ReadModels,
    if_match: IfMatch = None,
    withdrawal: Annotated[WithdrawalIn | None, Body()] = None,
) -> Response:
    """Withdraw a directive (its status becomes ``withdrawn``; it stays on record)."""
    expected = expected_version(if_match)
    directive = await readable(directive_id, "write", principal, policy, service, read_models)
    changed = await service.withdraw(directive, principal, withdrawal or WithdrawalIn(), expected)
    if not await read_back(changed, principal, policy, service, read_models):
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
    directive_id: str,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    read_models: ReadModels,
) -> JSONResponse:
    directive = await readable(directive_id, "read", principal, policy, service, read_models)
    return _fhir(fhir.consent_resource(directive), ETag=etag(directive.version))


@router.get("/fhir/R4/Consent", tags=["fhir"])
async def search_consents(
    request: Request,
    patient: Annotated[str, Query(pattern=r"^(Patient/)?\d{11}$")],
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    read_models: ReadModels,
) -> JSONResponse:
    """The patient's directives as a searchset Bundle (``patient``: ``[Patient/]<national id>``)."""
    national_id = patient.removeprefix("Patient/")
    directives = await service.for_patient(national_id)
    await about_patient(policy, principal, "search", national_id, directives, read_models)
    base = str(request.base_url).rstrip("/")
    return _fhir(fhir.searchset(directives, base))
