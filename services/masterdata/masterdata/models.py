"""Persons and care relations as master data holds them."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from akson_common.identifiers import national_id_kind

AddressProtection = Literal["none", "fortrolig", "strengt_fortrolig"]


def _national_id(value: str) -> str:
    national_id_kind(value)
    return value


NationalId = Annotated[str, AfterValidator(_national_id)]
Municipality = Annotated[str, Field(pattern=r"^\d{4}$")]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: str = Field(min_length=1, max_length=200)
    postal_code: str = Field(pattern=r"^\d{4}$")
    city: str = Field(min_length=1, max_length=100)


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    national_id: NationalId
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    municipality: Municipality
    address: Address | None = None
    address_protection: AddressProtection = "none"
    date_of_death: date | None = None


class Person(PersonIn):
    revision: int = 1


class PersonPublic(BaseModel):
    """What leaves the service: a protected address is never in it."""

    national_id: str
    given_name: str
    family_name: str
    municipality: str
    address: Address | None
    address_protection: AddressProtection
    date_of_death: date | None
    revision: int


class CareRelationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
    practitioner: str | None = Field(default=None, pattern=r"^\d{1,10}$")
    unit: str | None = Field(default=None, max_length=64)
    period_start: date
    period_end: date | None = None

    @model_validator(mode="after")
    def _party_and_period(self) -> CareRelationIn:
        if not (self.practitioner or self.unit):
            raise ValueError("a care relation names a practitioner or a unit")
        if self.period_end is not None and self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self
