"""Master data HTTP API: thin routes; every access asks the policy first, in
``masterdata.access``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, Response

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal
from akson_common.errors import (
    PROTECTED_RESPONSES,
    BadRequest,
    UnsupportedMediaType,
)
from akson_common.fhir import FHIR_JSON, capability_statement, fhir_base, resource_capability
from akson_common.policy import written_unread
from masterdata import fhir
from masterdata.access import MasterDataAccess, same_key
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

router = APIRouter(tags=["masterdata"], responses=PROTECTED_RESPONSES)
NDJSON = "application/x-ndjson"

Access = Annotated[
    MasterDataAccess, Depends(state_dependency("masterdata_access", MasterDataAccess))
]
Count = Annotated[int, Query(alias="_count", ge=1, le=500)]
After = Annotated[str | None, Query(alias="_after", max_length=64)]


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
    national_id: str, person: PersonIn, principal: CurrentPrincipal, access: Access
) -> PersonPublic | Response:
    """Create or update a person from the population register (idempotent); the person as
    stored (never the address) if the writer may read it back, else only the identifier."""
    same_key(national_id, person.national_id, "national_id")
    saved = await access.save_person(principal, person)
    return saved if saved is not None else written_unread(200, {"national_id": national_id})


@router.get("/persons/{national_id}", response_model=PersonPublic)
async def get_person(national_id: str, principal: CurrentPrincipal, access: Access) -> PersonPublic:
    return await access.person(principal, national_id)


@router.get("/persons", response_model=PersonPage)
async def search_persons(
    request: Request,
    principal: CurrentPrincipal,
    access: Access,
    count: Count = 50,
    after: After = None,
    identifier: Annotated[str | None, Query(max_length=80)] = None,
    name: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    municipality: Annotated[str | None, Query(pattern=r"^\d{4}$")] = None,
) -> PersonPage:
    """Search by identifier, name prefix (given or family) or municipality; keyset paging."""
    page = await access.search_persons(
        principal,
        identifier=identifier,
        name=name,
        municipality=municipality,
        count=count,
        after=after,
    )
    return PersonPage(items=page.items, next=_next_link(request, page.next_after))


@router.get("/fhir/R4/Patient/{national_id}", tags=["fhir"])
async def get_patient(
    national_id: str, principal: CurrentPrincipal, access: Access
) -> JSONResponse:
    return _fhir(fhir.patient_resource(await access.person(principal, national_id)))


@router.get("/fhir/R4/Patient", tags=["fhir"])
async def search_patients(
    request: Request,
    principal: CurrentPrincipal,
    access: Access,
    patient_id: Annotated[str | None, Query(alias="_id", pattern=r"^\d{11}$")] = None,
    identifier: Annotated[str | None, Query(max_length=80)] = None,
) -> JSONResponse:
    """The patient with ``_id`` or ``identifier`` (``[system|]<national id>``), as a searchset
    of at most one; decided about that patient like a search of persons."""
    wanted = patient_id or (identifier.rsplit("|", 1)[-1] if identifier else None)
    if wanted is None:
        raise BadRequest("search Patient by _id or identifier")
    found = await access.patient(principal, wanted)
    base = fhir_base(request)
    entries = []
    if found is not None:
        resource = fhir.patient_resource(found)
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


@router.put("/practitioners/{hpr_number}", response_model=Practitioner)
async def put_practitioner(
    hpr_number: str, practitioner: PractitionerIn, principal: CurrentPrincipal, access: Access
) -> Practitioner | Response:
    register = access.data.practitioners
    saved = await access.save_directory(
        principal, "Practitioner", register, hpr_number, practitioner
    )
    return saved if saved is not None else written_unread(200, {"hpr_number": hpr_number})


@router.get("/practitioners/{hpr_number}", response_model=Practitioner)
async def get_practitioner(
    hpr_number: str, principal: CurrentPrincipal, access: Access
) -> Practitioner:
    return await access.practitioner(principal, hpr_number)


@router.get("/fhir/R4/Practitioner/{hpr_number}", tags=["fhir"])
async def get_fhir_practitioner(
    hpr_number: str, principal: CurrentPrincipal, access: Access
) -> JSONResponse:
    return _fhir(fhir.practitioner_resource(await access.practitioner(principal, hpr_number)))


@router.get(
    "/fhir/R4/PractitionerRole",
    tags=["fhir"],
    responses={404: {"description": "No such practitioner"}},
)
async def search_practitioner_roles(
    practitioner: Annotated[str, Query(pattern=r"^\d{1,9}$")],
    principal: CurrentPrincipal,
    access: Access,
) -> JSONResponse:
    """The roles (one per employment) of a practitioner, as a searchset Bundle."""
    found = await access.practitioner(principal, practitioner, "search")
    return _fhir(fhir.practitioner_roles(found))


# -- organisations ---------------------------------------------------------------------------


@router.put("/organisations/{org_number}", response_model=Organisation)
async def put_organisation(
    org_number: str, organisation: OrganisationIn, principal: CurrentPrincipal, access: Access
) -> Organisation | Response:
    register = access.data.organisations
    saved = await access.save_directory(
        principal, "Organization", register, org_number, organisation
    )
    return saved if saved is not None else written_unread(200, {"org_number": org_number})


@router.get("/organisations/{org_number}", response_model=Organisation)
async def get_organisation(
    org_number: str, principal: CurrentPrincipal, access: Access
) -> Organisation:
    return await access.organisation(principal, org_number)


@router.get("/organisations", response_model=OrganisationPage)
async def search_organisations(
    request: Request,
    principal: CurrentPrincipal,
    access: Access,
    count: Count = 50,
    after: After = None,
    municipality: Annotated[str | None, Query(pattern=r"^\d{4}$")] = None,
    parent: Annotated[str | None, Query(pattern=r"^\d{9}$")] = None,
) -> OrganisationPage:
    """Organisations and units by municipality or parent (the unit hierarchy); keyset paging."""
    page = await access.search_organisations(
        principal, municipality=municipality, parent=parent, count=count, after=after
    )
    return OrganisationPage(items=page.items, next=_next_link(request, page.next_after))


@router.get("/fhir/R4/Organization/{org_number}", tags=["fhir"])
async def get_fhir_organization(
    org_number: str, principal: CurrentPrincipal, access: Access
) -> JSONResponse:
    return _fhir(fhir.organization_resource(await access.organisation(principal, org_number)))


# -- care relations --------------------------------------------------------------------------


@router.put("/care-relations/{relation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def put_care_relation(
    relation_id: str, relation: CareRelationIn, principal: CurrentPrincipal, access: Access
) -> None:
    same_key(relation_id, relation.relation_id, "relation_id")
    await access.save_care_relation(principal, relation)


@router.get("/care-relations", response_model=CareRelationList)
async def active_care_relations(
    patient: Annotated[str, Query(pattern=r"^\d{11}$")], principal: CurrentPrincipal, access: Access
) -> CareRelationList:
    """The patient's care relations in force today: what the access policy depends on."""
    return CareRelationList(items=await access.care_relations(principal, patient))


@router.post("/care-relations/{relation_id}/end", response_model=CareRelationList)
async def end_care_relation(
    relation_id: str, end: CareRelationEnd, principal: CurrentPrincipal, access: Access
) -> CareRelationList | Response:
    """End a relation on ``period_end`` (inclusive); returns the relation as ended if the
    writer may read it back, else only its identifier."""
    ended = await access.end_care_relation(principal, relation_id, end.period_end)
    if ended is None:
        return written_unread(200, {"relation_id": relation_id})
    return CareRelationList(items=[ended])


# -- bulk import -----------------------------------------------------------------------------


@router.post(
    "/import/{kind}",
    response_model=ImportReport,
    openapi_extra={"requestBody": {"content": {NDJSON: {"schema": {"type": "string"}}}}},
)
async def bulk_import(
    kind: str, request: Request, principal: CurrentPrincipal, access: Access
) -> ImportReport:
    """NDJSON, one record per line; idempotent on the records' national identifiers.

    Valid lines are stored (each with its event, through the outbox); invalid ones are listed
    by line number and reason. One decision covers the import: it is a registry write.
    """
    access.register_of(kind)  # an unknown kind: 422 before the body is looked at
    if request.headers.get("content-type", "").split(";")[0].strip() != NDJSON:
        raise UnsupportedMediaType(f"the body must be {NDJSON}")
    return await access.import_lines(principal, kind, (await request.body()).splitlines())
