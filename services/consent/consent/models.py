"""Consent directives: blocks, reservations and sharing consents, as consent holds them.

Three shapes, told apart by ``kind`` (a discriminated union, so a request names exactly the
fields of its kind and nothing else):

- ``block``: exactly one of ``practitioner`` (HPR number), ``unit`` or ``organisation`` (org
  numbers) may not access the patient's record;
- ``reservation``: the patient reserves against sharing ``categories`` (empty = all) outside
  ``scope`` (other municipalities, NAV, child welfare);
- ``consent``: ``recipient_organisation`` may receive ``categories`` (at least one) for
  ``purpose`` (NAV, child welfare);
- ``device``: the welfare-technology ``device`` (its id in welfare's device registry) may be
  assigned to the patient and record into their record (alarms, dispensers, measurements);
  withdrawing it stops welfare accepting the device's messages.

Every kind has a period; ``reason`` is free text given by personnel acting on the patient's
behalf. It stays in this service: never in an event, a log line or the policy input.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from akson_common.auth import Acting
from akson_common.events import DirectiveKind, ReservationScope
from akson_common.identifiers import HprNumber, NationalId, OrganisationNumber

DirectiveStatus = Literal["active", "withdrawn"]
SharingPurpose = Literal["nav", "child_welfare"]
# A category is a code of the record's category system (the policy's table), never text.
Category = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Categories = Annotated[list[Category], Field(max_length=20)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
# a FHIR id: the device's id in welfare's registry
DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,63}$")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DirectiveBase(Request):
    patient: NationalId
    period_start: date
    period_end: date | None = None
    reason: Reason | None = None

    @model_validator(mode="after")
    def _period_ordered(self) -> DirectiveBase:
        if self.period_end is not None and self.period_end < self.period_start:
            raise ValueError("the period ends before it starts")
        return self


def _distinct(categories: list[str]) -> None:
    if len(set(categories)) != len(categories):
        raise ValueError("a category is listed twice")


class BlockIn(DirectiveBase):
    kind: Literal["block"]
    practitioner: HprNumber | None = None
    unit: OrganisationNumber | None = None
    organisation: OrganisationNumber | None = None

    @model_validator(mode="after")
    def _one_target(self) -> BlockIn:
        targets = [t for t in (self.practitioner, self.unit, self.organisation) if t is not None]
        if len(targets) != 1:
            raise ValueError("a block names exactly one practitioner, unit or organisation")
        return self


class ReservationIn(DirectiveBase):
    kind: Literal["reservation"]
    scope: ReservationScope
    categories: Categories = Field(default_factory=list)

    @model_validator(mode="after")
    def _categories(self) -> ReservationIn:
        _distinct(self.categories)
        return self


class SharingConsentIn(DirectiveBase):
    kind: Literal["consent"]
    recipient_organisation: OrganisationNumber
    purpose: SharingPurpose
    categories: Annotated[Categories, Field(min_length=1)]

    @model_validator(mode="after")
    def _categories(self) -> SharingConsentIn:
        _distinct(self.categories)
        return self


class DeviceConsentIn(DirectiveBase):
    kind: Literal["device"]
    device: DeviceId


DirectiveIn = Annotated[
    BlockIn | ReservationIn | SharingConsentIn | DeviceConsentIn, Field(discriminator="kind")
]


class WithdrawalIn(Request):
    """``reason`` is required when personnel withdraw on the patient's behalf."""

    reason: Reason | None = None


class Registrar(Acting):
    """Who made a change: the patient themselves, or personnel (or a system) on their behalf."""


class Change(BaseModel):
    """One entry of a directive's history: each version, who made it, when and why."""

    version: int
    status: DirectiveStatus
    at: datetime
    by: Registrar
    reason: str | None = None


class Directive(BaseModel):
    """A directive as stored and returned. Nothing is ever deleted: withdrawal is a status."""

    id: str
    version: int
    patient: str
    kind: DirectiveKind
    status: DirectiveStatus
    practitioner: str | None = None
    unit: str | None = None
    organisation: str | None = None
    categories: list[str] = Field(default_factory=list)
    scope: ReservationScope | None = None
    recipient_organisation: str | None = None
    purpose: SharingPurpose | None = None
    device: str | None = None
    period_start: date
    period_end: date | None = None
    registered_at: datetime
    registered_by: Registrar
    history: list[Change] = Field(default_factory=list)

    def active_on(self, day: date) -> bool:
        return (
            self.status == "active"
            and self.period_start <= day
            and (self.period_end is None or day <= self.period_end)
        )


class DirectiveList(BaseModel):
    items: list[Directive]
