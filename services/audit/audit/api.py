"""The auditor API: query and export the decision log, verify the chain. Read-only.

Every call asks the policy first (type ``DecisionLog``, purpose ``audit``): only the auditor
role is allowed. OPA logs that decision like any other, so auditors' own queries are in the
log too. There is no update or delete: PUT, PATCH and DELETE on these paths answer 405.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, model_validator

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal, Principal
from akson_common.errors import PROTECTED_RESPONSES, MethodNotAllowed, NotFound
from akson_common.guard import INT64_MAX
from akson_common.policy import Action, Policy, PolicyContext, PolicyEnforcementPoint, ResourceRef
from audit import signals
from audit.directory import Directory
from audit.store import DecisionStore

router = APIRouter(prefix="/audit", tags=["audit"], responses=PROTECTED_RESPONSES)
AUDIT = PolicyContext(purpose="audit")
NDJSON = "application/x-ndjson"

Store = Annotated[DecisionStore, Depends(state_dependency("decisions", DecisionStore))]
Names = Annotated[Directory, Depends(state_dependency("directory", Directory))]
Identifier = Annotated[str | None, Query(min_length=1, max_length=80)]


class DecisionFilter(BaseModel):
    """The auditor's query; every field narrows it (AND)."""

    patient: str | None = None
    practitioner: str | None = None
    actor: str | None = None
    organisation: str | None = None
    municipality: str | None = None
    app: str | None = None
    from_: datetime | None = None
    to: datetime | None = None
    outcome: Literal["allow", "deny"] | None = None
    reason: str | None = None
    emergency: bool | None = None
    resource_type: str | None = None

    def selector(self) -> dict[str, Any]:
        selector: dict[str, Any] = {}
        for field, name in (
            ("patient", "patient"),
            ("practitioner", "hpr"),
            ("actor", "actor"),
            ("organisation", "organisation"),
            ("municipality", "municipality"),
            ("app", "app"),
            ("reason", "reasons"),
            ("resource_type", "resource_type"),
            ("emergency", "emergency"),
        ):
            value = getattr(self, field)
            if value is not None:
                selector[name] = value
        if self.outcome is not None:
            selector["allow"] = self.outcome == "allow"
        window: dict[str, datetime] = {}
        if self.from_ is not None:
            window["$gte"] = self.from_
        if self.to is not None:
            window["$lt"] = self.to
        if window:
            selector["at"] = window
        return selector


async def decision_filter(
    patient: Identifier = None,
    practitioner: Annotated[str | None, Query(pattern=r"^\d{1,9}$")] = None,
    actor: Identifier = None,
    organisation: Annotated[str | None, Query(pattern=r"^[\w-]{1,40}$")] = None,
    municipality: Annotated[str | None, Query(pattern=r"^\d{4}$")] = None,
    app: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:-]{1,100}$")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    outcome: Literal["allow", "deny"] | None = None,
    reason: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$")] = None,
    emergency: bool | None = None,
    resource_type: Annotated[str | None, Query(pattern=r"^[A-Za-z]{1,64}$")] = None,
) -> DecisionFilter:
    return DecisionFilter(
        patient=patient,
        practitioner=practitioner,
        actor=actor,
        organisation=organisation,
        municipality=municipality,
        app=app,
        from_=from_,
        to=to,
        outcome=outcome,
        reason=reason,
        emergency=emergency,
        resource_type=resource_type,
    )


Filter = Annotated[DecisionFilter, Depends(decision_filter)]


class DecisionView(BaseModel):
    """One logged decision: who, what, when, the outcome and its basis (no clinical content).

    Whatever the stored record holds (an OPA input of unexpected shape, a quarantine record),
    a view is made: text fields take any scalar as text, lists keep their text items, so a
    listing or an export never breaks on one odd record."""

    position: int
    decision_id: str
    hash: str
    at: str | None
    actor: str | None
    actor_kind: str | None
    hpr: str | None
    profession: str | None
    organisation: str | None
    unit: str | None
    municipality: str | None
    app: str | None = None
    action: str | None
    resource_type: str | None
    resource_id: str | None
    patient: str | None
    category: str | None
    allow: bool
    reasons: list[str]
    obligations: list[str]
    emergency_reason: str | None
    purpose: str | None
    care_relations: list[dict[str, Any]]
    policy_version: str | None
    quarantined: bool = False

    @model_validator(mode="before")
    @classmethod
    def _tolerant(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        shaped = dict(values)
        for name in ("reasons", "obligations"):
            items = shaped.get(name)
            shaped[name] = (
                [i for i in items if isinstance(i, str)] if isinstance(items, list) else []
            )
        relations = shaped.get("care_relations")
        shaped["care_relations"] = (
            [r for r in relations if isinstance(r, dict)] if isinstance(relations, list) else []
        )
        for name, field in cls.model_fields.items():
            value = shaped.get(name)
            if field.annotation == str | None and value is not None and not isinstance(value, str):
                shaped[name] = json.dumps(value, default=str)
        return shaped


class DecisionPage(BaseModel):
    items: list[DecisionView]
    next: str | None


def view(document: dict[str, Any]) -> DecisionView:
    record = document.get("record") or {}
    policy_input = record.get("input") or {}
    subject = policy_input.get("subject") or {}
    resource = policy_input.get("resource") or {}
    context = policy_input.get("context") or {}
    result = record.get("result") or {}
    return DecisionView(
        position=int(document["position"]),
        decision_id=str(document["_id"]),
        hash=str(document["hash"]),
        at=record.get("timestamp"),
        actor=subject.get("id"),
        actor_kind=subject.get("kind"),
        hpr=subject.get("hpr_number"),
        profession=subject.get("profession"),
        organisation=subject.get("organisation"),
        unit=subject.get("unit"),
        municipality=subject.get("municipality"),
        app=subject.get("app"),
        action=policy_input.get("action"),
        resource_type=resource.get("type"),
        resource_id=resource.get("id"),
        patient=resource.get("patient"),
        category=resource.get("category"),
        allow=result.get("allow") is True,
        reasons=result.get("reasons"),
        obligations=result.get("obligations"),
        emergency_reason=context.get("emergency_reason"),
        purpose=context.get("purpose"),
        care_relations=context.get("care_relations"),
        policy_version=result.get("policy_version"),
        quarantined=record.get("quarantined") is True,
    )


CSV_COLUMNS = [
    name
    for name in DecisionView.model_fields
    if name not in {"care_relations"}  # nested: in NDJSON only
]


async def ask(
    policy: PolicyEnforcementPoint,
    principal: Principal,
    action: Action,
    patient: str | None = None,
    resource_type: str = "DecisionLog",
) -> None:
    await policy.enforce(principal, action, ResourceRef(type=resource_type, patient=patient), AUDIT)


@router.get("/decisions", response_model=DecisionPage)
async def search_decisions(
    request: Request,
    principal: CurrentPrincipal,
    policy: Policy,
    store: Store,
    query: Filter,
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
) -> DecisionPage:
    """Decisions matching every given filter, newest first; ``next`` pages on (keyset)."""
    await ask(policy, principal, "search", query.patient)
    documents, before = await store.page(query.selector(), limit=count, before=cursor)
    following = None
    if before is not None:
        url = request.url.include_query_params(cursor=before)
        following = f"{url.path}?{url.query}"
    return DecisionPage(items=[view(d) for d in documents], next=following)


@router.get(
    "/decisions/export",
    responses={200: {"content": {NDJSON: {}, "text/csv": {}}}},
    response_class=StreamingResponse,
)
async def export_decisions(
    principal: CurrentPrincipal,
    policy: Policy,
    store: Store,
    query: Filter,
    format: Literal["ndjson", "csv"] = "ndjson",
) -> StreamingResponse:
    """Every matching decision, newest first, streamed as NDJSON or CSV."""
    await ask(policy, principal, "search", query.patient)
    documents = store.stream(query.selector())
    if format == "csv":
        return StreamingResponse(
            _csv(documents),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="decisions.csv"'},
        )
    return StreamingResponse(_ndjson(documents), media_type=NDJSON)


async def _ndjson(documents: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for document in documents:
        yield (json.dumps(view(document).model_dump(mode="json")) + "\n").encode()


async def _csv(documents: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    async for document in documents:
        row = view(document).model_dump(mode="json")
        row["reasons"] = " ".join(row["reasons"])
        row["obligations"] = " ".join(row["obligations"])
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


@router.get("/decisions/{decision_id}", response_model=DecisionView)
async def get_decision(
    decision_id: Annotated[str, Path(max_length=80)],
    principal: CurrentPrincipal,
    policy: Policy,
    store: Store,
) -> DecisionView:
    await ask(policy, principal, "read")
    document = await store.one(decision_id)
    if document is None:
        raise NotFound("no such decision")
    return view(document)


class VerifyResult(BaseModel):
    intact: bool
    checked: int
    start: int
    last_position: int
    checkpoints_checked: int
    first_bad_position: int | None
    problem: str | None
    message: str


@router.get("/chain/verify", response_model=VerifyResult)
async def verify_chain(principal: CurrentPrincipal, policy: Policy, store: Store) -> VerifyResult:
    """Recompute the whole chain (it reads every record: an operator's tool, not a hot path)."""
    await ask(policy, principal, "read")
    report = await store.verify()
    return VerifyResult(
        intact=report.intact,
        checked=report.checked,
        start=report.start,
        last_position=report.last_position,
        checkpoints_checked=report.checkpoints_checked,
        first_bad_position=report.finding.position if report.finding else None,
        problem=report.finding.problem if report.finding else None,
        message=report.summary(),
    )


# The log is append-only: say so explicitly rather than with a bare routing error.
for path in ("/decisions", "/decisions/{decision_id}", "/chain/verify"):

    @router.api_route(
        path,
        methods=["POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    async def refuse_change(request: Request) -> None:
        raise MethodNotAllowed(
            "the decision log is append-only: records cannot be created, changed or deleted "
            "through the API",
            headers={"Allow": "GET"},
        )


# -- the citizen's access log ------------------------------------------------------------------

# audit data (the policy's audit_types): an auditor's query or review verdict is not an access
# to the citizen's record (a review of an emergency access named her as its patient)
AUDIT_TYPES = list(signals.AUDIT_TYPES)


class AccessView(BaseModel):
    """One access to the citizen's record: who, from where, when, what kind, on what basis."""

    at: str | None
    actor: str | None
    actor_kind: str | None
    hpr: str | None
    name: str | None  # from master data (public register data); None when not known
    profession: str | None
    organisation: str | None
    organisation_name: str | None
    unit: str | None
    unit_name: str | None
    municipality: str | None
    app: str | None = None
    action: str | None
    resource_type: str | None
    category: str | None
    basis: list[str]
    emergency: bool


class AccessPage(BaseModel):
    items: list[AccessView]
    next: str | None


citizen_router = APIRouter(prefix="/audit", tags=["access log"], responses=PROTECTED_RESPONSES)


@citizen_router.get("/access-log", response_model=AccessPage)
async def my_access_log(
    request: Request,
    principal: CurrentPrincipal,
    policy: Policy,
    store: Store,
    directory: Names,
    count: Annotated[int, Query(alias="_count", ge=1, le=200)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
) -> AccessPage:
    """Who accessed my record (allowed accesses by others; not my own, not audit queries),
    newest first. No clinical content: the kind of record and the basis only."""
    await policy.enforce(
        principal, "read", ResourceRef(type="AccessLog", patient=principal.id), AUDIT
    )
    selector = {
        "patient": principal.id,
        "allow": True,
        "actor": {"$ne": principal.id},
        "resource_type": {"$nin": AUDIT_TYPES},
    }
    documents, before = await store.page(selector, limit=count, before=cursor)
    following = None
    if before is not None:
        url = request.url.include_query_params(cursor=before)
        following = f"{url.path}?{url.query}"
    views = [view(document) for document in documents]
    people = await directory.practitioner_names(v.hpr for v in views)
    places = await directory.organisation_names(
        [*(v.organisation for v in views), *(v.unit for v in views)]
    )
    items = []
    for item in views:
        items.append(
            AccessView(
                at=item.at,
                actor=item.actor,
                actor_kind=item.actor_kind,
                hpr=item.hpr,
                name=people.get(item.hpr or ""),
                profession=item.profession,
                organisation=item.organisation,
                organisation_name=places.get(item.organisation or ""),
                unit=item.unit,
                unit_name=places.get(item.unit or ""),
                municipality=item.municipality,
                action=item.action,
                resource_type=item.resource_type,
                category=item.category,
                basis=item.reasons,
                emergency=item.emergency_reason is not None or "emergency" in item.reasons,
            )
        )
    return AccessPage(items=items, next=following)
