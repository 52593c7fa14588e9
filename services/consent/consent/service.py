"""Consent logic: directives are registered and withdrawn, never deleted or edited in place.

Every change is one single-document write that carries its ``consent.directive.changed`` event
(outbox), bumps ``version`` and appends to the directive's history who made it, when and — for
personnel acting on the patient's behalf — why. The reason stays here: the event carries
identifiers and codes only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import uuid4

from pymongo import IndexModel

from akson_common.app import Platform
from akson_common.auth import Principal
from akson_common.db import Repository
from akson_common.errors import Conflict, Forbidden, NotFound, PreconditionFailed, Unprocessable
from akson_common.events import CONSENT_DIRECTIVE_CHANGED, ConsentDirectiveChangedV1, cloud_event
from akson_common.outbox import Outbox
from akson_common.policy import (
    Action,
    Decision,
    PatientFacts,
    PolicyContext,
    PolicyEnforcementPoint,
    ResourceRef,
)
from akson_common.projections import PatientProjections
from consent.models import (
    Change,
    Directive,
    DirectiveIn,
    DirectiveStatus,
    Registrar,
    WithdrawalIn,
)

DIRECTIVES = "directives"
EVENT_FIELDS = set(ConsentDirectiveChangedV1.model_fields) - {"directive_id"}
# What a request may set; everything else (id, version, status, history) is the service's.
REQUESTED_FIELDS = EVENT_FIELDS - {"version", "status"}


def now() -> datetime:
    return datetime.now(UTC)


def on_behalf(principal: Principal, patient: str) -> bool:
    """Anyone but the patient themselves acts on the patient's behalf."""
    return not (principal.kind == "citizen" and principal.id == patient)


def required_reason(principal: Principal, patient: str, reason: str | None) -> str | None:
    if on_behalf(principal, patient) and not (reason and reason.strip()):
        raise Unprocessable(
            "a reason is required when registering or withdrawing on the patient's behalf",
            errors=[{"loc": ["body", "reason"], "msg": "Field required"}],
        )
    return reason


def changed_event(directive: Directive) -> ConsentDirectiveChangedV1:
    """The contract the journal consumes: identifiers and codes, no free text."""
    return ConsentDirectiveChangedV1.model_validate(
        {"directive_id": directive.id, **directive.model_dump(mode="json", include=EVENT_FIELDS)}
    )


def policy_directives(directives: list[Directive], day: date | None = None) -> list[dict[str, Any]]:
    """The patient's directives as the policy input's ``context.directives``."""
    today = day or now().date()
    return [
        {**changed_event(d).model_dump(mode="json"), "active": d.active_on(today)}
        for d in directives
    ]


def new_directive(request: DirectiveIn, principal: Principal, at: datetime) -> Directive:
    by = Registrar.of(principal)
    reason = required_reason(principal, request.patient, request.reason)
    return Directive.model_validate(
        {
            **request.model_dump(include=REQUESTED_FIELDS),
            "id": uuid4().hex,
            "version": 1,
            "status": "active",
            "registered_at": at,
            "registered_by": by,
            "history": [Change(version=1, status="active", at=at, by=by, reason=reason)],
        }
    )


def withdrawn(
    directive: Directive,
    principal: Principal,
    withdrawal: WithdrawalIn,
    expected_version: int | None,
    at: datetime,
) -> Directive:
    """The directive as withdrawn by ``principal``, or the problem that forbids it."""
    if expected_version is not None and expected_version != directive.version:
        raise PreconditionFailed(
            f"the directive is at version {directive.version}", version=directive.version
        )
    if directive.status == "withdrawn":
        raise Conflict("the directive is already withdrawn", version=directive.version)
    if (
        directive.kind == "block"
        and principal.hpr_number is not None
        and directive.practitioner == principal.hpr_number
    ):
        # Only the patient, or someone else on their behalf, lifts a block on a practitioner.
        raise Forbidden("a practitioner cannot withdraw a block against themselves")
    reason = required_reason(principal, directive.patient, withdrawal.reason)
    status: DirectiveStatus = "withdrawn"
    change = Change(
        version=directive.version + 1,
        status=status,
        at=at,
        by=Registrar.of(principal),
        reason=reason,
    )
    return directive.model_copy(
        update={
            "status": status,
            "version": change.version,
            "history": [*directive.history, change],
        }
    )


class ConsentDirectives:
    def __init__(self, platform: Platform) -> None:
        self.outbox: Outbox = platform.outbox
        self.repository = Repository(
            platform.database,
            DIRECTIVES,
            Directive,
            indexes=[IndexModel([("patient", 1), ("registered_at", 1)])],
        )
        self.outbox.track(DIRECTIVES)

    async def get(self, directive_id: str) -> Directive | None:
        return await self.repository.get_one_or_none(directive_id)

    async def for_patient(self, patient: str) -> list[Directive]:
        return await self.repository.find({"patient": patient}, limit=1000, sort="registered_at")

    async def register(
        self, request: DirectiveIn, principal: Principal, patient: PatientFacts | None
    ) -> Directive:
        """Record a new directive. A patient master data has not told us about yet is accepted
        (its events may lag, and the national id's control digits were checked); one master data
        says is deceased is not."""
        if patient is not None and patient.deceased:
            raise Conflict("the patient is deceased: no new directives")
        directive = new_directive(request, principal, now())
        document = self.repository.to_document(directive)
        await self.outbox.insert_many(DIRECTIVES, [(document, [self._event(directive)])])
        return directive

    async def withdraw(
        self,
        directive: Directive,
        principal: Principal,
        withdrawal: WithdrawalIn,
        expected_version: int | None,
    ) -> Directive:
        changed = withdrawn(directive, principal, withdrawal, expected_version, now())
        state = self.repository.to_document(changed)
        saved = await self.outbox.save(
            DIRECTIVES,
            # only the version we read: a concurrent change makes this match nothing
            {"_id": directive.id, "version": directive.version, "status": "active"},
            {"$set": {k: v for k, v in state.items() if k != "_id"}},
            [self._event(changed)],
        )
        if saved is None:
            current = await self.get(directive.id)
            version = current.version if current else None
            if expected_version is not None:
                raise PreconditionFailed("the directive changed meanwhile", version=version)
            raise Conflict("the directive changed meanwhile", version=version)
        return changed

    def _event(self, directive: Directive) -> dict[str, Any]:
        return cloud_event(
            CONSENT_DIRECTIVE_CHANGED,
            changed_event(directive),
            source="consent",
            subject=directive.patient,
        )


RESOURCE_TYPE = "Consent"
CATEGORY = "consent"


def consent_ref(patient: str | None, directive_id: str | None = None) -> ResourceRef:
    return ResourceRef(type=RESOURCE_TYPE, patient=patient, category=CATEGORY, id=directive_id)


class ConsentAccess:
    """The directives as callers reach them: every operation asks the policy first, with the
    patient's care relations, registry facts and directives (so the policy can, e.g., refuse a
    blocked practitioner); what it answers is a read too."""

    def __init__(
        self,
        directives: ConsentDirectives,
        pep: PolicyEnforcementPoint,
        projections: PatientProjections,
    ) -> None:
        self.directives, self.pep, self.projections = directives, pep, projections

    async def _context(self, patient: str, directives: list[Directive]) -> PolicyContext:
        return PolicyContext(
            care_relations=await self.projections.active_care_relations(patient),
            directives=policy_directives(directives),
            patient=await self.projections.patient_facts(patient),
        )

    async def about_patient(
        self, principal: Principal, action: Action, patient: str
    ) -> tuple[Decision, list[Directive]]:
        """Ask about a patient's directives as a whole (register, list): 403 when refused;
        the decision and the directives it was made with."""
        directives = await self.directives.for_patient(patient)
        context = await self._context(patient, directives)
        decision = await self.pep.enforce(principal, action, consent_ref(patient), context)
        return decision, directives

    async def readable(self, directive_id: str, action: Action, principal: Principal) -> Directive:
        """The directive if the caller may ``action`` it; 404 alike when unknown or refused."""
        directive = await self.directives.get(directive_id)
        if directive is None:
            resource, context = ResourceRef(type=RESOURCE_TYPE, id=directive_id), PolicyContext()
        else:
            directives = await self.directives.for_patient(directive.patient)
            context = await self._context(directive.patient, directives)
            resource = consent_ref(directive.patient, directive_id)
        await self.pep.visible(
            principal,
            action,
            resource,
            context,
            known=directive is not None,
            not_found=NotFound("no such directive"),
        )
        assert directive is not None  # visible raised for an unknown one
        return directive

    async def read_back(self, directive: Directive, principal: Principal) -> bool:
        """A response body is a read: may the writer read the directive it wrote?"""
        directives = await self.directives.for_patient(directive.patient)
        context = await self._context(directive.patient, directives)
        resource = consent_ref(directive.patient, directive.id)
        return await self.pep.read_back(principal, resource, context) is not None

    async def register(self, request: DirectiveIn, principal: Principal) -> Directive:
        await self.about_patient(principal, "write", request.patient)
        patient = await self.projections.patient_facts(request.patient)
        return await self.directives.register(request, principal, patient)

    async def for_patient(self, patient: str, principal: Principal) -> list[Directive]:
        _, directives = await self.about_patient(principal, "search", patient)
        return directives

    async def withdraw(
        self,
        directive_id: str,
        principal: Principal,
        withdrawal: WithdrawalIn,
        expected_version: int | None,
    ) -> Directive:
        directive = await self.readable(directive_id, "write", principal)
        return await self.directives.withdraw(directive, principal, withdrawal, expected_version)
