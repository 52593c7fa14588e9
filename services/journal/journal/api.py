"""Journal HTTP API (FHIR R4 under /fhir/R4): the policy is asked before data leaves the store."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response, status
from fastapi.responses import JSONResponse

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal
from akson_common.errors import PROTECTED_RESPONSES, NotFound
from akson_common.policy import Policy, PolicyContext, ResourceRef
from journal.documents import DocumentStore, category_of, parse_document, patient_of
from journal.projections import Projections

router = APIRouter(prefix="/fhir/R4", tags=["fhir"])
FHIR_JSON = "application/fhir+json"


Documents = Annotated[DocumentStore, Depends(state_dependency("documents", DocumentStore))]
ReadModels = Annotated[Projections, Depends(state_dependency("projections", Projections))]


@router.post(
    "/DocumentReference", status_code=status.HTTP_201_CREATED, responses=PROTECTED_RESPONSES
)
async def create_document(
    body: Annotated[dict[str, Any], Body()],
    principal: CurrentPrincipal,
    policy: Policy,
    store: Documents,
    read_models: ReadModels,
    response: Response,
) -> JSONResponse:
    document = parse_document(body)
    patient, category = patient_of(document), category_of(document)
    await policy.enforce(
        principal,
        "write",
        ResourceRef(type="DocumentReference", patient=patient, category=category),
        PolicyContext(care_relations=await read_models.active_care_relations(patient)),
    )
    document_id = await store.add(document, patient=patient, category=category)
    return JSONResponse(
        document.model_dump(mode="json", exclude_none=True),
        status_code=201,
        media_type=FHIR_JSON,
        headers={"Location": f"/fhir/R4/DocumentReference/{document_id}", "ETag": 'W/"1"'},
    )


@router.get("/DocumentReference/{document_id}", responses=PROTECTED_RESPONSES)
async def read_document(
    document_id: str,
    principal: CurrentPrincipal,
    policy: Policy,
    store: Documents,
    read_models: ReadModels,
) -> JSONResponse:
    stored = await store.get(document_id)
    if stored is None:
        # Same answer whether it does not exist or is not yours to know about.
        await policy.enforce(
            principal, "read", ResourceRef(type="DocumentReference"), PolicyContext()
        )
        raise NotFound("no such DocumentReference")
    await policy.enforce(
        principal,
        "read",
        ResourceRef(
            type="DocumentReference",
            patient=stored["patient"],
            category=stored["category"],
            id=document_id,
        ),
        PolicyContext(care_relations=await read_models.active_care_relations(stored["patient"])),
    )
    return JSONResponse(
        stored["resource"], media_type=FHIR_JSON, headers={"ETag": f'W/"{stored["version"]}"'}
    )
