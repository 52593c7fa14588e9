"""FHIR R4 views of master data, built and validated with fhir.resources' R4B models.

R4B is wire-compatible with R4 for Patient, Practitioner, PractitionerRole and Organization.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner as FhirPractitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole

from akson_common.identifiers import NationalIdKind, national_id_kind
from masterdata.models import Organisation, PersonPublic, Practitioner

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
HNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.3"
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORG_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
HER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.2"
PROFESSION_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9060"
SERVICE_TYPE_SYSTEM = "urn:akson:service-type"


def national_id_system(national_id: str) -> str:
    """D-numbers have day + 40; synthetic test numbers keep that rule for their D variant."""
    kind = national_id_kind(national_id)
    if kind is NationalIdKind.H_NUMBER:
        return HNR_SYSTEM
    return DNR_SYSTEM if int(national_id[:2]) > 40 else FNR_SYSTEM


def _name(given: str, family: str) -> list[dict[str, Any]]:
    return [{"use": "official", "family": family, "given": given.split()}]


def patient_resource(person: PersonPublic) -> Patient:
    """``person`` is already the public view: a protected address was masked before this."""
    resource: dict[str, Any] = {
        "id": person.national_id,
        "identifier": [
            {"system": national_id_system(person.national_id), "value": person.national_id}
        ],
        "name": _name(person.given_name, person.family_name),
    }
    if person.birth_date is not None:
        resource["birthDate"] = person.birth_date.isoformat()
    if person.date_of_death is not None:
        resource["deceasedDateTime"] = person.date_of_death.isoformat()
    if person.address is not None:
        resource["address"] = [
            {
                "use": "home",
                "line": [person.address.line],
                "postalCode": person.address.postal_code,
                "city": person.address.city,
                "district": person.municipality,
            }
        ]
    return Patient.model_validate(resource)


def practitioner_resource(practitioner: Practitioner) -> FhirPractitioner:
    return FhirPractitioner.model_validate(
        {
            "id": practitioner.hpr_number,
            "active": practitioner.status == "active",
            "identifier": [{"system": HPR_SYSTEM, "value": practitioner.hpr_number}],
            "name": _name(practitioner.given_name, practitioner.family_name),
            "qualification": [
                {
                    "code": {"coding": [{"system": PROFESSION_SYSTEM, "code": a.profession}]},
                    "period": _period(a.valid_from, a.valid_to),
                }
                for a in practitioner.authorisations
            ],
        }
    )


def practitioner_roles(practitioner: Practitioner) -> Bundle:
    """One PractitionerRole per employment, as a searchset Bundle."""
    active = practitioner.status == "active"
    codes = [
        {"coding": [{"system": PROFESSION_SYSTEM, "code": a.profession}]}
        for a in practitioner.authorisations
    ]
    roles = [
        PractitionerRole.model_validate(
            {
                "id": f"{practitioner.hpr_number}-{e.unit}",
                "active": active,
                "practitioner": {"reference": f"Practitioner/{practitioner.hpr_number}"},
                "organization": {"reference": f"Organization/{e.unit}"},
                "period": _period(e.period_start, e.period_end),
                "code": codes,
            }
        )
        for e in practitioner.employments
    ]
    return _searchset(roles)


def organization_resource(organisation: Organisation) -> Organization:
    identifiers = [{"system": ORG_SYSTEM, "value": organisation.org_number}]
    if organisation.her_id:
        identifiers.append({"system": HER_SYSTEM, "value": organisation.her_id})
    resource: dict[str, Any] = {
        "id": organisation.org_number,
        "active": True,
        "identifier": identifiers,
        "name": organisation.name,
        "address": [{"district": organisation.municipality}],
    }
    if organisation.service_type:
        resource["type"] = [
            {"coding": [{"system": SERVICE_TYPE_SYSTEM, "code": organisation.service_type}]}
        ]
    if organisation.parent:
        resource["partOf"] = {"reference": f"Organization/{organisation.parent}"}
    return Organization.model_validate(resource)


def _period(start: Any, end: Any) -> dict[str, str]:
    period = {"start": start.isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    return period


def _searchset(resources: list[Any]) -> Bundle:
    return Bundle.model_validate(
        {
            "type": "searchset",
            "total": len(resources),
            "entry": [{"resource": r} for r in resources],
        }
    )
