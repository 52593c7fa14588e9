"""Service logic without servers: FHIR views, the masking rule, NDJSON parsing, the seed."""

from __future__ import annotations

import json
from datetime import date
from typing import Any, cast

import pytest

from akson_common.identifiers import NationalIdKind, national_id_control_digits, national_id_kind
from masterdata import fhir
from masterdata.imports import parse_lines
from masterdata.models import (
    Organisation,
    Person,
    Practitioner,
    PractitionerIn,
)
from masterdata.seed import generate
from masterdata.service import Register, public_view


def valid_id(first_nine: str) -> str:
    control = national_id_control_digits(first_nine)
    assert control is not None
    return first_nine + control


def first_valid(date_part: str) -> str:
    for individual in range(100, 500):
        if national_id_control_digits(f"{date_part}{individual}") is not None:
            return valid_id(f"{date_part}{individual}")
    raise AssertionError("none")


SYNTHETIC = first_valid("018190")
SYNTHETIC_D = first_valid("418190")


def protected_person(**overrides: Any) -> Person:
    return Person.model_validate(
        {
            "national_id": SYNTHETIC,
            "given_name": "Kari Anne",
            "family_name": "Syntetisk",
            "municipality": "4601",
            "address": {"line": "Skjultveien 1", "postal_code": "5003", "city": "Bergen"},
            "address_protection": "fortrolig",
            **overrides,
        }
    )


@pytest.mark.parametrize("protection", ["fortrolig", "strengt_fortrolig"])
def test_a_protected_address_is_masked_unless_allowed(protection: str) -> None:
    person = protected_person(address_protection=protection)
    masked = public_view(person, address_allowed=False)
    assert masked.address is None
    assert "Skjultveien" not in fhir.patient_resource(masked).model_dump_json()
    assert public_view(person, address_allowed=True).address is not None


def test_an_unprotected_address_is_shown() -> None:
    person = protected_person(address_protection="none")
    assert public_view(person, address_allowed=False).address is not None


def test_patient_view_identifier_systems_and_death() -> None:
    person = public_view(protected_person(date_of_death=date(2025, 1, 2)), address_allowed=False)
    patient = fhir.patient_resource(person).model_dump(mode="json", exclude_none=True)
    assert patient["identifier"] == [{"system": fhir.FNR_SYSTEM, "value": SYNTHETIC}]
    assert patient["name"][0]["given"] == ["Kari", "Anne"]
    assert patient["deceasedDateTime"] == "2025-01-02"
    assert fhir.national_id_system(SYNTHETIC_D) == fhir.DNR_SYSTEM
    assert fhir.national_id_system(first_valid("010190")) == fhir.FNR_SYSTEM
    assert fhir.national_id_system(first_valid("410190")) == fhir.DNR_SYSTEM
    assert fhir.national_id_system(first_valid("014190")) == fhir.HNR_SYSTEM


def practitioner(**overrides: Any) -> Practitioner:
    return Practitioner.model_validate(
        {
            "hpr_number": "8000001",
            "given_name": "Lege",
            "family_name": "Syntetisk",
            "status_from": "2010-01-01",
            "authorisations": [
                {"profession": "LE", "valid_from": "2010-01-01"},
                {"profession": "SP", "valid_from": "2001-01-01", "valid_to": "2009-12-31"},
            ],
            "employments": [
                {"unit": "974760673", "period_start": "2015-01-01"},
                {"unit": "100000008", "period_start": "2011-01-01", "period_end": "2014-12-31"},
            ],
            **overrides,
        }
    )


def test_practitioner_professions_and_units_follow_the_dates() -> None:
    doctor = practitioner()
    assert doctor.professions_on(date(2020, 1, 1)) == ("LE",)
    assert doctor.professions_on(date(2009, 6, 1)) == ("SP",)
    assert doctor.units_on(date(2020, 1, 1)) == ("974760673",)
    assert doctor.units_on(date(2012, 1, 1)) == ("100000008",)


def test_practitioner_and_role_views() -> None:
    doctor = practitioner(status="suspended")
    resource = fhir.practitioner_resource(doctor).model_dump(mode="json", exclude_none=True)
    assert resource["active"] is False
    assert resource["identifier"] == [{"system": fhir.HPR_SYSTEM, "value": "8000001"}]
    bundle = fhir.practitioner_roles(doctor).model_dump(mode="json", exclude_none=True)
    assert bundle["total"] == 2
    assert bundle["entry"][1]["resource"]["period"] == {"start": "2011-01-01", "end": "2014-12-31"}


def test_organization_view_with_parent_and_her_id() -> None:
    unit = Organisation.model_validate(
        {"org_number": "974760673", "name": "Legevakt", "municipality": "1804",
         "parent": "100000008", "service_type": "emergency_clinic", "her_id": "81234"}
    )  # fmt: skip
    resource = fhir.organization_resource(unit).model_dump(mode="json", exclude_none=True)
    assert resource["partOf"] == {"reference": "Organization/100000008"}
    assert {"system": fhir.HER_SYSTEM, "value": "81234"} in resource["identifier"]


@pytest.mark.parametrize(
    "changes",
    [
        {"status_to": "2000-01-01"},
        {"authorisations": [{"profession": "XX", "valid_from": "2010-01-01"}]},
        {"employments": [{"unit": "974760674", "period_start": "2015-01-01"}]},
        {"hpr_number": "0123"},
    ],
)
def test_invalid_practitioners_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PractitionerIn.model_validate(
            {**practitioner().model_dump(exclude={"revision"}), **changes}
        )


def persons_register() -> Register[Any, Any]:
    # parse_lines only needs the record model and the key; no database is touched
    from masterdata.models import PersonIn

    class Keyed:
        id_field = "national_id"

    register = Register.__new__(Register)
    register.record = PersonIn
    register.repository = cast(Any, Keyed)
    return register


def test_import_lines_report_reasons_by_line_without_the_data() -> None:
    good = {"national_id": SYNTHETIC, "given_name": "A", "family_name": "B", "municipality": "4601"}
    secret = "Hemmeligsen"
    lines = [
        json.dumps(good).encode(),
        b"",
        json.dumps({**good, "national_id": "12345678901", "given_name": secret}).encode(),
        b'{"given_name": "' + secret.encode() + b'"',
        b"[1, 2]",
        json.dumps({**good, "given_name": secret}).encode(),
        b"\xff\xfe",
    ]
    records, report = parse_lines(persons_register(), lines)
    assert [r.national_id for r in records] == [SYNTHETIC]
    assert (report.received, report.rejected) == (6, 5)
    assert [e.line for e in report.errors] == [3, 4, 5, 6, 7]
    assert "national_id" in report.errors[0].reason
    assert "earlier line" in report.errors[3].reason
    text = report.model_dump_json()
    assert secret not in text and "12345678901" not in text


def test_the_seed_is_deterministic_synthetic_and_covers_the_edge_cases() -> None:
    first, second = generate(400), generate(400)
    assert first == second
    persons = first.persons
    assert all(national_id_kind(p["national_id"]) is NationalIdKind.SYNTHETIC for p in persons)
    assert len({p["national_id"] for p in persons}) == len(persons)
    assert {p["municipality"] for p in persons} == {"4601", "1103", "4204", "1804"}
    assert any("date_of_death" in p for p in generate(2000).persons)
    assert {p["address_protection"] for p in generate(2000).persons} == {
        "none", "fortrolig", "strengt_fortrolig",
    }  # fmt: skip
    assert {"suspended", "revoked"} <= {p["status"] for p in first.practitioners}
    relations = {r["patient"] for r in first.care_relations}
    assert relations == {p["national_id"] for p in persons}


def test_a_hostile_import_line_is_refused_as_a_line_and_the_rest_goes_in() -> None:
    good = {"national_id": SYNTHETIC, "given_name": "A", "family_name": "B", "municipality": "4601"}
    lines = [
        json.dumps({**good, "given_name": "A\x00"}).encode(),
        b"[" * 10_000 + b"]" * 10_000,
        json.dumps({**good, "family_name": "\ud800"}).encode(),
        b'{"national_id": 99999999999999999999999}',
        json.dumps(good).encode(),
    ]
    records, report = parse_lines(persons_register(), lines)
    assert [r.national_id for r in records] == [SYNTHETIC]
    assert (report.received, report.rejected) == (5, 4)
    assert [e.line for e in report.errors] == [1, 2, 3, 4]
    assert report.errors[0].reason.startswith("line.given_name")
    assert "nested deeper" in report.errors[1].reason
    assert "\x00" not in report.model_dump_json()
