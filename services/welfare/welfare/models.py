"""Devices as welfare's registry keeps them, and what its API takes and answers.

A device (FHIR Device) is registered under the id its hub or vendor knows it by, together
with its first assignment to a patient: who assigned it (home-care personnel with a care
relation), the responsible home-care unit (the assigner's) and the patient's thresholds that
turn its measurements into alerts. Unassigned, it stays on record; it may be assigned again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from akson_common.auth import Acting
from akson_common.identifiers import NationalId, OrganisationNumber

LOINC = "http://loinc.org"
# a FHIR id (the Device's id, as its hub references it: Device/<id>)
DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,63}$")]
# a client id at identity
ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,63}$")]
System = Annotated[str, Field(pattern=r"^(https?|urn):[A-Za-z0-9._:/\-]{1,200}$")]
DeviceKind = Literal[
    "safety_alarm",
    "medicine_dispenser",
    "fall_sensor",
    "door_sensor",
    "bed_sensor",
    "blood_pressure_monitor",
    "pulse_oximeter",
    "scale",
    "glucose_meter",
    "other",
]
DeviceStatus = Literal["assigned", "unassigned"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Threshold(Request):
    """A measurement (``code`` in ``system``, LOINC by default) is out of range below ``low``
    or above ``high`` (at least one of them)."""

    code: Code
    system: System = LOINC
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Threshold:
        if self.low is None and self.high is None:
            raise ValueError("a threshold has a low or a high bound")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError("low is above high")
        return self


Thresholds = Annotated[list[Threshold], Field(max_length=20)]


class AssignmentIn(Request):
    """``unit``: the responsible home-care unit (organisation number) the device's alerts go
    to, when it is not the assigner's own (a provider off the platform gets them through
    messaging)."""

    patient: NationalId
    unit: OrganisationNumber | None = None
    thresholds: Thresholds = Field(default_factory=list)


class DeviceIn(AssignmentIn):
    """Register a device and assign it to its first patient. ``hub``: the client id of the hub
    or vendor that alone may send its messages (any hub with the scope, when not given)."""

    id: DeviceId
    kind: DeviceKind
    hub: ClientId | None = None


class Actor(Acting):
    """Who assigned or unassigned a device."""


class Assignment(BaseModel):
    patient: str
    # the responsible home-care unit (organisation number): where the device's alerts go
    unit: str | None = None
    thresholds: list[Threshold] = Field(default_factory=list)
    assigned_at: datetime
    assigned_by: Actor


class DeviceChange(BaseModel):
    version: int
    status: DeviceStatus
    patient: str
    at: datetime
    by: Actor


class Device(BaseModel):
    id: str
    version: int
    kind: DeviceKind
    hub: str | None = None
    status: DeviceStatus
    assignment: Assignment | None = None
    registered_at: datetime
    history: list[DeviceChange] = Field(default_factory=list)

    @property
    def patient(self) -> str | None:
        return self.assignment.patient if self.assignment is not None else None


class DeviceList(BaseModel):
    items: list[Device]
