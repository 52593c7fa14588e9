"""Asking the policy, the journal's way: the facts come from the projections, the caller's
purpose and emergency reason from request headers, and the obligations of the decision are
carried out here (emergency access is recorded and announced through the outbox).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from akson_common.auth import Principal
from akson_common.db import Database, Document
from akson_common.events import EMERGENCY_ACCESS, EmergencyAccessV1, cloud_event
from akson_common.outbox import Outbox
from akson_common.policy import (
    Action,
    Decision,
    PolicyContext,
    PolicyEnforcementPoint,
    ResourceRef,
)
from akson_common.projections import PatientProjections
from journal.store import ACCESS_FIELDS, AccessTuple

EMERGENCY_ACCESSES = "emergency_accesses"
NOTIFY_PATIENT = "notify_patient"
REVIEW_EMERGENCY_ACCESS = "review_emergency_access"
MASK_ADDRESS = "mask_address"


@dataclass(frozen=True)
class Caller:
    """Who asks, and why: the verified token plus the request's purpose and emergency reason."""

    principal: Principal
    purpose: str = "treatment"
    emergency_reason: str | None = None

    @property
    def writer(self) -> str:
        return self.principal.hpr_number or self.principal.id


def obligations(decision: Decision) -> set[str]:
    return decision.obligation_codes()


def resource_ref(
    document: Mapping[str, Any], *, with_id: bool = True, existing: bool = True
) -> ResourceRef:
    """What the policy is told about a resource: its access attributes, never content.
    ``existing``: it is on record (a write changes it); False for one being created."""
    return ResourceRef(
        existing=existing,
        type=document["type"],
        id=str(document["_id"]) if with_id and "_id" in document else None,
        patient=document.get("patient"),
        category=document.get("category"),
        sensitivity=document.get("sensitivity") or "normal",
        unit=document.get("unit"),
        organisation=document.get("organisation"),
        municipality=document.get("municipality"),
        author=document.get("author"),
        withheld_from_patient=bool(document.get("withheld", False)),
    )


def tuple_ref(patient: str, values: AccessTuple) -> ResourceRef:
    return resource_ref({"patient": patient, **dict(zip(ACCESS_FIELDS, values, strict=True))})


def mask_addresses(resource: dict[str, Any]) -> dict[str, Any]:
    """The journal keeps no address of its own; a contained person resource might carry one."""
    contained = resource.get("contained")
    if not contained:
        return resource
    masked = []
    for item in contained:
        if isinstance(item, dict) and item.get("resourceType") in {
            "Patient",
            "RelatedPerson",
            "Person",
        }:
            item = {k: v for k, v in item.items() if k != "address"}
        masked.append(item)
    return {**resource, "contained": masked}


class Access:
    def __init__(
        self,
        pep: PolicyEnforcementPoint,
        projections: PatientProjections,
        database: Database,
        outbox: Outbox,
    ) -> None:
        self.pep = pep
        self.projections = projections
        self.outbox = outbox
        self.emergencies = database.collection(EMERGENCY_ACCESSES)
        outbox.track(EMERGENCY_ACCESSES)

    async def context(self, caller: Caller, patient: str | None) -> PolicyContext:
        if patient is None:
            base = PolicyContext()
        else:
            base = await self.projections.context(patient)
        return base.model_copy(
            update={"purpose": caller.purpose, "emergency_reason": caller.emergency_reason}
        )

    async def decide(
        self, caller: Caller, action: Action, resource: ResourceRef, context: PolicyContext
    ) -> Decision:
        decision = await self.pep.decide(caller.principal, action, resource, context)
        if decision.allow and obligations(decision) & {NOTIFY_PATIENT, REVIEW_EMERGENCY_ACCESS}:
            await self._record_emergency(caller, resource, decision)
        return decision

    async def decide_many(
        self,
        caller: Caller,
        action: Action,
        patient: str,
        tuples: Iterable[AccessTuple],
        context: PolicyContext,
    ) -> dict[AccessTuple, Decision]:
        """One decision per distinct combination of access attributes (no OPA: PolicyUnavailable
        for the lot)."""
        keys = list(tuples)
        decisions = await asyncio.gather(
            *(self.decide(caller, action, tuple_ref(patient, key), context) for key in keys)
        )
        return dict(zip(keys, decisions, strict=True))

    async def _record_emergency(
        self, caller: Caller, resource: ResourceRef, decision: Decision
    ) -> None:
        if resource.patient is None:
            return
        principal = caller.principal
        event = EmergencyAccessV1(
            decision_id=decision.decision_id,
            patient=resource.patient,
            practitioner=caller.writer,
            unit=principal.unit,
            organisation=principal.organisation,
            reason_code=caller.emergency_reason or "unspecified",
            resource_type=resource.type,
            category=resource.category,
            at=datetime.now(UTC),
        )
        record: Document = {
            "_id": decision.decision_id or str(uuid.uuid4()),
            **event.model_dump(mode="json"),
        }
        envelope = cloud_event(EMERGENCY_ACCESS, event, source="journal", subject=resource.patient)
        await self.outbox.insert_many(EMERGENCY_ACCESSES, [(record, [envelope])])
