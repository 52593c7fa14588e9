"""Persons, practitioners, organisations and care relations as master data holds them."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from akson_common.identifiers import (
    HerId,
    HprNumber,
    Municipality,
    NationalId,
    OrganisationNumber,
)

AddressProtection = Literal["none", "fortrolig", "strengt_fortrolig"]

# HPR "9060 Kategori helsepersonell" (OID 2.16.578.1.12.4.1.1.9060), the codes in use here.
ProfessionCode = Literal[
    "LE", "SP", "HF", "FT", "TL", "TH", "JM", "PS", "ET", "VP", "FA1", "FA2", "AA", "KI", "OT"
]  # fmt: skip
ServiceType = Literal[
    "gp_office",
    "emergency_clinic",
    "nursing_home",
    "home_care",
    "health_station",
    "physiotherapy",
    "public_dental",
]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _period_ordered(start: date, end: date | None) -> None:
    if end is not None and end < start:
        raise ValueError("the period ends before it starts")


# -- persons ---------------------------------------------------------------------------------


class Address(Record):
    line: str = Field(min_length=1, max_length=200)
    postal_code: str = Field(pattern=r"^\d{4}$")
    city: str = Field(min_length=1, max_length=100)


class PersonIn(Record):
    national_id: NationalId
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    birth_date: date | None = None
    municipality: Municipality
    address: Address | None = None
    address_protection: AddressProtection = "none"
    date_of_death: date | None = None


class Person(PersonIn):
    revision: int = 1


class PersonPublic(BaseModel):
    """What leaves the service: a protected address is never in it without the right."""

    national_id: str
    given_name: str
    family_name: str
    birth_date: date | None
    municipality: str
    address: Address | None
    address_protection: AddressProtection
    date_of_death: date | None
    revision: int


# -- practitioners (HPR) ---------------------------------------------------------------------


class Authorisation(Record):
    profession: ProfessionCode
    valid_from: date
    valid_to: date | None = None
    limited: bool = False

    @model_validator(mode="after")
    def _period(self) -> Authorisation:
        _period_ordered(self.valid_from, self.valid_to)
        return self


class Employment(Record):
    unit: OrganisationNumber
    period_start: date
    period_end: date | None = None

    @model_validator(mode="after")
    def _period(self) -> Employment:
        _period_ordered(self.period_start, self.period_end)
        return self


class PractitionerIn(Record):
    hpr_number: HprNumber
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    status: Literal["active", "suspended", "revoked"] = "active"
    status_from: date
    status_to: date | None = None
    authorisations: list[Authorisation] = Field(default_factory=list, max_length=20)
    employments: list[Employment] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _period(self) -> PractitionerIn:
        _period_ordered(self.status_from, self.status_to)
        return self

    def professions_on(self, day: date) -> tuple[str, ...]:
        return tuple(
            sorted(
                {
                    a.profession
                    for a in self.authorisations
                    if _covers(a.valid_from, a.valid_to, day)
                }
            )
        )

    def units_on(self, day: date) -> tuple[str, ...]:
        return tuple(
            sorted({e.unit for e in self.employments if _covers(e.period_start, e.period_end, day)})
        )


class Practitioner(PractitionerIn):
    revision: int = 1


# -- organisations and units -----------------------------------------------------------------


class OrganisationIn(Record):
    org_number: OrganisationNumber
    name: str = Field(min_length=1, max_length=200)
    municipality: Municipality
    parent: OrganisationNumber | None = None
    service_type: ServiceType | None = None
    her_id: HerId | None = None
    on_platform: bool = False

    @model_validator(mode="after")
    def _not_own_parent(self) -> OrganisationIn:
        if self.parent == self.org_number:
            raise ValueError("an organisation is not its own parent")
        return self


class Organisation(OrganisationIn):
    revision: int = 1


# -- care relations --------------------------------------------------------------------------


class CareRelationIn(Record):
    relation_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    patient: NationalId
    kind: Literal[
        "gp_list",
        "home_care",
        "nursing_home",
        "emergency_clinic",
        "health_station",
        "physiotherapy",
        "dental",
    ]
    practitioner: HprNumber | None = None
    unit: str | None = Field(default=None, max_length=64)
    period_start: date
    period_end: date | None = None

    @model_validator(mode="after")
    def _party_and_period(self) -> CareRelationIn:
        if not (self.practitioner or self.unit):
            raise ValueError("a care relation names a practitioner or a unit")
        _period_ordered(self.period_start, self.period_end)
        return self

    def active_on(self, day: date) -> bool:
        return _covers(self.period_start, self.period_end, day)


class CareRelation(CareRelationIn):
    revision: int = 1


class CareRelationEnd(Record):
    period_end: date


def _covers(start: date, end: date | None, day: date) -> bool:
    return start <= day and (end is None or day <= end)


# -- paging ----------------------------------------------------------------------------------


class PersonPage(BaseModel):
    items: list[PersonPublic]
    next: str | None = None


class OrganisationPage(BaseModel):
    items: list[Organisation]
    next: str | None = None


class CareRelationList(BaseModel):
    items: list[CareRelation]


class ImportLineError(BaseModel):
    line: int
    reason: str


class ImportReport(BaseModel):
    """Counts and per-line errors; never the rejected data itself."""

    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[ImportLineError] = Field(default_factory=list)
