"""The audit service's models: the auditor's query, the views of the decision log, the gaps,
the quarantine, the signals and the emergency-access reviews, and the citizen's access log."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# quarantined: OPA logged it, but its entry could not be stored as sent (see audit.quarantine)
Side = Literal["enforced_only", "logged_only", "quarantined"]
Rule = Literal["unusual_volume", "protected_address", "repeated_emergency"]


class Signal(BaseModel):
    rule: Rule
    practitioner: str
    patient: str | None = None
    count: int
    explanation: str
    numbers: dict[str, float]


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


class VerifyResult(BaseModel):
    intact: bool
    checked: int
    start: int
    last_position: int
    checkpoints_checked: int
    first_bad_position: int | None
    problem: str | None
    message: str


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

    @classmethod
    def of(cls, item: DecisionView, people: dict[str, str], places: dict[str, str]) -> AccessView:
        """The access ``item`` records, with names from the directory (``people``: by HPR
        number, ``places``: by organisation number)."""
        return cls(
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
            app=item.app,
            action=item.action,
            resource_type=item.resource_type,
            category=item.category,
            basis=item.reasons,
            emergency=item.emergency_reason is not None or "emergency" in item.reasons,
        )


class AccessPage(BaseModel):
    items: list[AccessView]
    next: str | None


class GapView(BaseModel):
    decision_id: str
    side: Side
    service: str | None
    allow: bool | None
    status: Literal["open", "resolved"]
    detected_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, document: dict[str, Any]) -> GapView:
        resolved = document.get("resolved_at")
        return cls(
            decision_id=str(document["_id"]),
            side=document["side"],
            service=document.get("service"),
            allow=document.get("allow"),
            status=document["status"],
            detected_at=aware(document["detected_at"]),
            resolved_at=aware(resolved) if resolved else None,
        )


class GapPage(BaseModel):
    items: list[GapView]


class QuarantinedView(BaseModel):
    decision_id: str
    reason: str
    quarantined_at: datetime
    entry_json_base64: str

    @classmethod
    def of(cls, document: dict[str, Any]) -> QuarantinedView:
        return cls(
            decision_id=str(document["_id"]),
            reason=str(document.get("reason", "")),
            quarantined_at=aware(document["quarantined_at"]),
            entry_json_base64=str(document.get("entry_json_base64", "")),
        )


class QuarantinePage(BaseModel):
    items: list[QuarantinedView]


class SignalQuery(BaseModel):
    """The signals' window and thresholds (see ``audit.signals``); the query of
    ``GET /audit/signals``, with its bounds."""

    day: date | None = None
    baseline_days: int = Field(default=14, ge=1, le=90)
    k: float = Field(default=3.0, gt=0, le=10)
    min_volume: int = Field(default=10, ge=1, le=10_000)
    min_emergency: int = Field(default=3, ge=1, le=1000)


class SignalPage(BaseModel):
    day: date
    window_start: date
    items: list[Signal]


ReviewOutcome = Literal["justified", "not_justified"]


class Review(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    status: Literal["open", "closed"]
    decision_id: str | None
    patient: str
    practitioner: str
    unit: str | None
    organisation: str | None
    reason_code: str
    resource_type: str
    category: str | None
    accessed_at: datetime
    opened_at: datetime
    outcome: ReviewOutcome | None = None
    comment: str | None = None
    reviewer: str | None = None
    reviewed_at: datetime | None = None


class ReviewPage(BaseModel):
    items: list[Review]


class ReviewVerdict(BaseModel):
    outcome: ReviewOutcome
    comment: str = Field(min_length=1, max_length=2000)


def aware(value: datetime) -> datetime:
    """A stored date with its zone (the database may hand it back naive, in UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
