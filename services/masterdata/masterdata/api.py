"""Master data HTTP API: thin routes, every access through the policy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, Response

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal, Principal
from akson_common.errors import (
    PROTECTED_RESPONSES,
    BadRequest,
    Unprocessable,
    UnsupportedMediaType,
)
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
from masterdata import fhir
from masterdata.imports import parse_lines
from masterdata.models import (
    CareRelationEnd,
    CareRelationIn,
    CareRelationList,
    ImportReport,
    Organisation,
    OrganisationIn,
    OrganisationPage,
    PersonIn,
    PersonPage,
    PersonPublic,
    Practitioner,
    PractitionerIn,
)
from masterdata.service import In, MasterData, Register, Stored, public_view

router = APIRouter(tags=["masterdata"], responses=PROTECTED_RESPONSES)
NDJSON = "application/x-ndjson"
# Person data is not clinical, but it is about a patient: the policy's "demographics" category.
DEMOGRAPHICS = "demographics"
REVEAL_ADDRESS = "reveal_address"
REGISTRY = PolicyContext(purpose="registry")
IMPORT_TYPES = {
    "persons": "Patient",
    "practitioners": "Practitioner",
    "organisations": "Organization",
    "care-relations": "CareRelation",
}


Service = Annotated[MasterData, Depends(state_dependency("masterdata", MasterData))]
Count = Annotated[int, Query(alias="_count", ge=1, le=500)]
After = Annotated[str | None, Query(alias="_after", max_length=64)]


async def about_patient(
    policy: PolicyEnforcementPoint,
    principal: Principal,
    action: Action,
    resource_type: str,
    patient: str | None,
    service: MasterData,
) -> Decision:
    """Ask about a patient's master data, giving the policy that patient's active relations."""
    resource = ResourceRef(type=resource_type, patient=patient, category=DEMOGRAPHICS)
    context = await patient_context(service, patient)
    return await policy.enforce(principal, action, resource, context)


async def patient_context(service: MasterData, patient: str | None) -> PolicyContext:
    relations = await service.active_care_relations(patient) if patient else []
    return PolicyContext(
        care_relations=[{**r.model_dump(mode="json"), "active": True} for r in relations]
    )


async def read_back_patient(
    policy: PolicyEnforcementPoint,
    principal: Principal,
    resource_type: str,
    patient: str,
    service: MasterData,
) -> Decision | None:
    """What a write about a patient answers is a read of it (None: answer without it)."""
    resource = ResourceRef(type=resource_type, patient=patient, category=DEMOGRAPHICS)
    return await policy.read_back(principal, resource, await patient_context(service, patient))


def _same_key(path_value: str, body_value: str, name: str) -> None:
    if path_value != body_value:
        raise Unprocessable(f"{name} in the body differs from the path")


async def directory_write(
    policy: PolicyEnforcementPoint,
    principal: Principal,
    resource_type: str,
    register: Register[In, Stored],
    key_field: str,
    path_key: str,
    record: In,
) -> Stored | Response:
    """Create or update a directory record (idempotent): the path names the record. The
    answer is the record if the writer may read it back, else only its identifier."""
    _same_key(path_key, register.key(record), "the identifier")
    await policy.enforce(principal, "write", ResourceRef(type=resource_type), REGISTRY)
    saved = await register.save(record)
    if await policy.read_back(principal, ResourceRef(type=resource_type), PolicyContext()):
        return saved
    return written_unread(200, {key_field: path_key})


def _next_link(request: Request, after: str | None) -> str | None:
    if after is None:
        return None
    url = request.url.include_query_params(_after=after)
    return f"{url.path}?{url.query}"


def _fhir(resource: Any) -> JSONResponse:
    return JSONResponse(resource.model_dump(mode="json", exclude_none=True), media_type=FHIR_JSON)


@router.get("/fhir/R4/metadata", tags=["fhir"])
async def capabilities(request: Request) -> JSONResponse:
    """The CapabilityStatement of master data's FHIR views (the gateway assembles the
    platform's from it): reads of Patient, Practitioner and Organization, PractitionerRole
    by practitioner."""
    patient = resource_capability(
        "Patient", ["read", "search-type"], [("_id", "token"), ("identifier", "token")]
    )
    reads = [patient, *(resource_capability(n, ["read"]) for n in ("Practitioner", "Organization"))]
    roles = resource_capability(
        "PractitionerRole", ["search-type"], [("practitioner", "reference")]
    )
    statement = capability_statement(
        "Akson master data (fhir.resources R4B models, wire-compatible with R4 for these types)",
        fhir_base(request),
        [*reads, roles],
    )
    return JSONResponse(statement, media_type=FHIR_JSON)


# -- persons ---------------------------------------------------------------------------------


@router.put("/persons/{national_id}", response_model=PersonPublic)
async def put_person(
    national_id: str,
    person: PersonIn,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> PersonPublic | Response:
    """Create or update a person from the population register (idempotent); the person as
    stored (never the address) if the writer may read it back, else only the identifier."""
    _same_key(national_id, person.national_id, "national_id")
    await policy.enforce(
        principal, "write", ResourceRef(type="Patient", patient=national_id), REGISTRY
    )
    saved = await service.persons.save(person)
    if await read_back_patient(policy, principal, "Patient", national_id, service) is None:
        return written_unread(200, {"national_id": national_id})
    return public_view(saved, address_allowed=False)


@router.get("/persons/{national_id}", response_model=PersonPublic)
async def get_person(
    national_id: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> PersonPublic:
    decision = await about_patient(policy, principal, "read", "Patient", national_id, service)
    person = await service.person(national_id)
    return public_view(person, address_allowed=REVEAL_ADDRESS in decision.obligations)


@router.get("/persons", response_model=PersonPage)
async def search_persons(
    request: Request,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    count: Count = 50,
    after: After = None,
    identifier: Annotated[str | None, Query(max_length=80)] = None,
    name: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    municipality: Annotated[str | None, Query(pattern=r"^\d{4}$")] = None,
) -> PersonPage:
    """Search by identifier, name prefix (given or family) or municipality; keyset paging."""
    patient = identifier.rsplit("|", 1)[-1] if identifier else None
    decision = await about_patient(policy, principal, "search", "Patient", patient, service)
    page = await service.search_persons(
        identifier=patient, name=name, municipality=municipality, count=count, after=after
    )
    allowed = REVEAL_ADDRESS in decision.obligations
    return PersonPage(
        items=[public_view(p, address_allowed=allowed) for p in page.items],
        next=_next_link(request, page.next_after),
    )


@router.get("/fhir/R4/Patient/{national_id}", tags=["fhir"])
async def get_patient(
    national_id: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> JSONResponse:
    person = await get_person(national_id, principal, policy, service)
    return _fhir(fhir.patient_resource(person))


@router.get("/fhir/R4/Patient", tags=["fhir"])
async def search_patients(
    request: Request,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    patient_id: Annotated[str | None, Query(alias="_id", pattern=r"^\d{11}$")] = None,
    identifier: Annotated[str | None, Query(max_length=80)] = None,
) -> JSONResponse:
    """The patient with ``_id`` or ``identifier`` (``[system|]<national id>``), as a searchset
    of at most one; decided about that patient like a search of persons."""
    wanted = patient_id or (identifier.rsplit("|", 1)[-1] if identifier else None)
    if wanted is None:
        raise BadRequest("search Patient by _id or identifier")
    decision = await about_patient(policy, principal, "search", "Patient", wanted, service)
    found = await service.persons.repository.get_one_or_none(wanted)
    allowed = REVEAL_ADDRESS in decision.obligations
    base = fhir_base(request)
    entries = []
    if found is not None:
        resource = fhir.patient_resource(public_view(found, address_allowed=allowed))
        entries.append(
            {
                "fullUrl": f"{base}/Patient/{wanted}",
                "resource": resource.model_dump(mode="json", exclude_none=True),
                "search": {"mode": "match"},
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "link": [{"relation": "self", "url": str(request.url)}],
        "entry": entries,
    }
    return JSONResponse(bundle, media_type=FHIR_JSON)


# -- practitioners ---------------------------------------------------------------------------


async def directory(
    policy: PolicyEnforcementPoint, principal: Principal, action: Action, resource_type: str
) -> None:
    """Directory data (who works where) is not health data; the policy still decides."""
    await policy.enforce(principal, action, ResourceRef(type=resource_type), PolicyContext())


@router.put("/practitioners/{hpr_number}", response_model=Practitioner)
async def put_practitioner(
    hpr_number: str,
    practitioner: PractitionerIn,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> Practitioner | Response:
    return await directory_write(
        policy,
        principal,
        "Practitioner",
        service.practitioners,
        "hpr_number",
        hpr_number,
        practitioner,
    )


@router.get("/practitioners/{hpr_number}", response_model=Practitioner)
async def get_practitioner(
    hpr_number: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> Practitioner:
    await directory(policy, principal, "read", "Practitioner")
    return await service.practitioner(hpr_number)


@router.get("/fhir/R4/Practitioner/{hpr_number}", tags=["fhir"])
async def get_fhir_practitioner(
    hpr_number: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> JSONResponse:
    practitioner = await get_practitioner(hpr_number, principal, policy, service)
    return _fhir(fhir.practitioner_resource(practitioner))


@router.get(
    "/fhir/R4/PractitionerRole",
    tags=["fhir"],
    responses={404: {"description": "No such practitioner"}},
)
async def search_practitioner_roles(
    practitioner: Annotated[str, Query(pattern=r"^\d{1,9}$")],
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> JSONResponse:
    """The roles (one per employment) of a practitioner, as a searchset Bundle."""
    await directory(policy, principal, "search", "Practitioner")
    return _fhir(fhir.practitioner_roles(await service.practitioner(practitioner)))


# -- organisations ---------------------------------------------------------------------------


@router.put("/organisations/{org_number}", response_model=Organisation)
async def put_organisation(
    org_number: str,
    organisation: OrganisationIn,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> Organisation | Response:
    return await directory_write(
        policy,
        principal,
        "Organization",
        service.organisations,
        "org_number",
        org_number,
        organisation,
    )


@router.get("/organisations/{org_number}", response_model=Organisation)
async def get_organisation(
    org_number: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> Organisation:
    await directory(policy, principal, "read", "Organization")
    return await service.organisation(org_number)


@router.get("/organisations", response_model=OrganisationPage)
async def search_organisations(
    request: Request,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    count: Count = 50,
    after: After = None,
    municipality: Annotated[str | None, Query(pattern=r"^\d{4}$")] = None,
    parent: Annotated[str | None, Query(pattern=r"^\d{9}$")] = None,
) -> OrganisationPage:
    """Organisations and units by municipality or parent (the unit hierarchy); keyset paging."""
    await directory(policy, principal, "search", "Organization")
    page = await service.search_organisations(
        municipality=municipality, parent=parent, count=count, after=after
    )
    return OrganisationPage(items=page.items, next=_next_link(request, page.next_after))


@router.get("/fhir/R4/Organization/{org_number}", tags=["fhir"])
async def get_fhir_organization(
    org_number: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> JSONResponse:
    organisation = await get_organisation(org_number, principal, policy, service)
    return _fhir(fhir.organization_resource(organisation))


# -- care relations --------------------------------------------------------------------------


@router.put("/care-relations/{relation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def put_care_relation(
    relation_id: str,
    relation: CareRelationIn,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> None:
    _same_key(relation_id, relation.relation_id, "relation_id")
    await policy.enforce(
        principal, "write", ResourceRef(type="CareRelation", patient=relation.patient), REGISTRY
    )
    await service.care_relations.save(relation)


@router.get("/care-relations", response_model=CareRelationList)
async def active_care_relations(
    patient: Annotated[str, Query(pattern=r"^\d{11}$")],
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> CareRelationList:
    """The patient's care relations in force today: what the access policy depends on."""
    await about_patient(policy, principal, "search", "CareRelation", patient, service)
    return CareRelationList(items=await service.active_care_relations(patient))


@router.post("/care-relations/{relation_id}/end", response_model=CareRelationList)
async def end_care_relation(
    relation_id: str,
    end: CareRelationEnd,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> CareRelationList | Response:
    """End a relation on ``period_end`` (inclusive); returns the relation as ended if the
    writer may read it back, else only its identifier."""
    await policy.enforce(principal, "write", ResourceRef(type="CareRelation"), REGISTRY)
    ended = await service.end_care_relation(relation_id, end.period_end)
    if await read_back_patient(policy, principal, "CareRelation", ended.patient, service) is None:
        return written_unread(200, {"relation_id": relation_id})
    return CareRelationList(items=[ended])


# -- bulk import -----------------------------------------------------------------------------


@router.post(
    "/import/{kind}",
    response_model=ImportReport,
    openapi_extra={"requestBody": {"content": {NDJSON: {"schema": {"type": "string"}}}}},
)
async def bulk_import(
    kind: str, request: Request, principal: CurrentPrincipal, policy: Policy, service: Service
) -> ImportReport:
    """NDJSON, one record per line; idempotent on the records' national identifiers.

    Valid lines are stored (each with its event, through the outbox); invalid ones are listed
    by line number and reason. One decision covers the import: it is a registry write.
    """
    register = service.registers.get(kind)
    if register is None:
        raise Unprocessable(f"import kinds: {', '.join(service.registers)}")
    if request.headers.get("content-type", "").split(";")[0].strip() != NDJSON:
        raise UnsupportedMediaType(f"the body must be {NDJSON}")
    await policy.enforce(principal, "write", ResourceRef(type=IMPORT_TYPES[kind]), REGISTRY)
    try:
        records, report = parse_lines(register, (await request.body()).splitlines())
    except ValueError as error:
        raise Unprocessable(str(error)) from None
    await register.save_many(records, report)
    return report
