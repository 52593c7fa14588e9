"""Master data HTTP API: thin routes, every access through the policy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status

from akson_common.auth import CurrentPrincipal
from akson_common.errors import PROTECTED_RESPONSES, NotFound, Unprocessable
from akson_common.policy import Policy, PolicyContext, ResourceRef
from masterdata.models import CareRelationIn, PersonIn, PersonPublic
from masterdata.service import MasterData, public_view

router = APIRouter(tags=["masterdata"])


def masterdata(request: Request) -> MasterData:
    service: MasterData = request.app.state.masterdata
    return service


Service = Annotated[MasterData, Depends(masterdata)]


@router.put("/persons/{national_id}", response_model=PersonPublic, responses=PROTECTED_RESPONSES)
async def put_person(
    national_id: Annotated[str, Path()],
    person: PersonIn,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> PersonPublic:
    """Create or update a person from the population register (idempotent)."""
    if person.national_id != national_id:
        raise Unprocessable("national_id in the body differs from the path")
    await policy.enforce(
        principal,
        "write",
        ResourceRef(type="Patient", patient=national_id),
        PolicyContext(purpose="registry"),
    )
    saved = await service.save_person(person)
    return public_view(saved, address_allowed=False)


@router.get("/persons/{national_id}", response_model=PersonPublic, responses=PROTECTED_RESPONSES)
async def get_person(
    national_id: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> PersonPublic:
    decision = await policy.enforce(
        principal, "read", ResourceRef(type="Patient", patient=national_id), PolicyContext()
    )
    person = await service.person(national_id)
    if person is None:
        raise NotFound("no such person")
    return public_view(person, address_allowed="reveal_address" in decision.obligations)


@router.put(
    "/care-relations/{relation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROTECTED_RESPONSES,
)
async def put_care_relation(
    relation_id: str,
    relation: CareRelationIn,
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> None:
    if relation.relation_id != relation_id:
        raise Unprocessable("relation_id in the body differs from the path")
    await policy.enforce(
        principal,
        "write",
        ResourceRef(type="CareRelation", patient=relation.patient),
        PolicyContext(purpose="registry"),
    )
    await service.save_care_relation(relation)
