"""Per-type parsing: validation, patient, category, sensitivity, date, status, attachments."""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

import pytest

from akson_common.errors import Unprocessable
from akson_common.identifiers import synthetic_national_id
from journal.kinds import KINDS, ContentTooLarge, check_size, normalise_instant, parse

PATIENT = synthetic_national_id(date(1980, 5, 17), 3)
SUBJECT = {"reference": f"Patient/{PATIENT}"}


def text_attachment(text: str = "Notat") -> dict[str, Any]:
    return {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}


def document(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": SUBJECT,
        "content": [{"attachment": text_attachment()}],
        **extra,
    }


SAMPLES: dict[str, tuple[dict[str, Any], str, str | None, str | None]] = {
    # type: (resource, category, status, date)
    "DocumentReference": (
        document(
            date="2025-01-02T10:00:00+01:00",
            category=[{"coding": [{"system": "urn:akson:category", "code": "dental"}]}],
        ),
        "dental",
        "current",
        "2025-01-02T09:00:00Z",
    ),
    "AllergyIntolerance": (
        {
            "resourceType": "AllergyIntolerance",
            "patient": SUBJECT,
            "recordedDate": "2024-06-01",
            "clinicalStatus": {"coding": [{"code": "active"}]},
        },
        "critical_info",
        "active",
        "2024-06-01T00:00:00Z",
    ),
    "Flag": (
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "Smitte"},
            "subject": SUBJECT,
            "period": {"start": "2024-02-01"},
        },
        "critical_info",
        "active",
        "2024-02-01T00:00:00Z",
    ),
    "MedicationStatement": (
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "medicationCodeableConcept": {"coding": [{"code": "C07AB02"}]},
            "subject": SUBJECT,
            "effectiveDateTime": "2025-01-10",
        },
        "medication",
        "active",
        "2025-01-10T00:00:00Z",
    ),
    "DiagnosticReport": (
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}
                    ]
                }
            ],
            "code": {"coding": [{"code": "36643-5"}]},
            "subject": SUBJECT,
            "issued": "2025-02-01T08:00:00Z",
        },
        "radiology",
        "final",
        "2025-02-01T08:00:00Z",
    ),
    "Observation": (
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"code": "4548-4"}]},
            "subject": SUBJECT,
            "effectiveDateTime": "2025-02-01T08:00:00Z",
        },
        "lab_result",
        "final",
        "2025-02-01T08:00:00Z",
    ),
    "MedicationAdministration": (
        {
            "resourceType": "MedicationAdministration",
            "status": "not-done",
            "medicationCodeableConcept": {"coding": [{"code": "N02BE01"}]},
            "subject": SUBJECT,
            "effectiveDateTime": "2025-03-02T08:00:00Z",
        },
        "medication",
        "not-done",
        "2025-03-02T08:00:00Z",
    ),
    "Encounter": (
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "HH"},
            "subject": SUBJECT,
            "period": {"start": "2025-03-01T09:00:00Z", "end": "2025-03-01T09:30:00Z"},
        },
        "visit",
        "finished",
        "2025-03-01T09:00:00Z",
    ),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_type_yields_patient_category_status_and_date(name: str) -> None:
    resource, category, status, when = SAMPLES[name]
    parsed = parse(KINDS[name], resource)
    assert parsed.patient == PATIENT
    assert parsed.category == category
    assert parsed.status == status
    assert parsed.date == when
    assert parsed.resource["resourceType"] == name


def test_an_observation_coded_welfare_is_of_the_welfare_category() -> None:
    measured = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "urn:akson:category", "code": "welfare"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
        "subject": SUBJECT,
        "effectiveDateTime": "2025-03-02T08:00:00Z",
        "valueQuantity": {"value": 91, "unit": "%"},
    }
    assert parse(KINDS["Observation"], measured).category == "welfare"
    unmarked = {**measured, "category": []}
    assert parse(KINDS["Observation"], unmarked).category == "lab_result"


def test_a_resource_of_another_type_is_refused() -> None:
    with pytest.raises(Unprocessable):
        parse(KINDS["Flag"], document())


def test_the_subject_must_be_a_valid_national_id() -> None:
    with pytest.raises(Unprocessable):
        parse(KINDS["DocumentReference"], document(subject={"reference": "Patient/12345678901"}))
    with pytest.raises(Unprocessable):
        parse(KINDS["DocumentReference"], document(subject={"reference": "Group/1"}))


def test_validation_errors_name_locations_never_values() -> None:
    secret = "Pasienten har hiv"
    with pytest.raises(Unprocessable) as caught:
        parse(KINDS["DocumentReference"], document(date=secret))
    assert secret not in str(caught.value.extra) and secret not in caught.value.detail
    assert caught.value.extra["errors"][0]["loc"] == ["date"]


def test_sensitive_categories_and_security_labels_mark_sensitivity() -> None:
    mental = document(
        category=[{"coding": [{"system": "urn:akson:category", "code": "mental_health"}]}]
    )
    assert parse(KINDS["DocumentReference"], mental).sensitivity == "sensitive"
    labelled = document(
        securityLabel=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ]
            }
        ]
    )
    assert parse(KINDS["DocumentReference"], labelled).sensitivity == "sensitive"
    assert parse(KINDS["DocumentReference"], document()).sensitivity == "normal"
    assert parse(KINDS["DocumentReference"], document()).category == "general"


def test_withheld_from_patient_is_a_meta_security_label() -> None:
    withheld = document(
        meta={"security": [{"system": "urn:akson:security", "code": "withheld-from-patient"}]}
    )
    assert parse(KINDS["DocumentReference"], withheld).withheld_from_patient
    assert not parse(KINDS["DocumentReference"], document()).withheld_from_patient


def test_attachments_are_inline_text_or_pdf() -> None:
    pdf = {"contentType": "application/pdf", "data": base64.b64encode(b"%PDF-1.7 x").decode()}
    assert parse(KINDS["DocumentReference"], document(content=[{"attachment": pdf}]))
    fake_pdf = {**pdf, "data": base64.b64encode(b"MZ not a pdf").decode()}
    linked = {"contentType": "text/plain", "url": "https://example.org/x"}
    html = {**text_attachment(), "contentType": "text/html"}
    for attachment in (fake_pdf, linked, html):
        with pytest.raises(Unprocessable):
            parse(KINDS["DocumentReference"], document(content=[{"attachment": attachment}]))


def test_the_size_limit_is_enforced() -> None:
    check_size(1024, 1024)
    with pytest.raises(ContentTooLarge) as caught:
        check_size(1025, 1024)
    assert caught.value.status == 413


def test_entered_in_error_marks_each_type_validly() -> None:
    for name, (resource, *_rest) in SAMPLES.items():
        kind = KINDS[name]
        marked = dict(resource)
        kind.mark_entered_in_error(marked)
        assert parse(kind, marked).status == "entered-in-error", name


def test_instants_normalise_to_sortable_utc() -> None:
    assert normalise_instant("2025-01-02") == "2025-01-02T00:00:00Z"
    assert normalise_instant("2025-01") == "2025-01-01T00:00:00Z"
    assert normalise_instant("2025-01-02T01:00:00+02:00") == "2025-01-01T23:00:00Z"
    assert normalise_instant("garbage") is None


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("DocumentReference", {"status": "bogus"}),
        ("DocumentReference", {"docStatus": "weird"}),
        ("Observation", {"status": "weird"}),
        ("DiagnosticReport", {"status": "done"}),
        ("Flag", {"status": "on"}),
        ("MedicationStatement", {"status": "taking"}),
        ("Encounter", {"status": "over"}),
        ("AllergyIntolerance", {"clinicalStatus": {"coding": [{"code": "weird"}]}}),
        (
            "AllergyIntolerance",
            {
                "verificationStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                            "code": "maybe",
                        }
                    ]
                }
            },
        ),
        ("AllergyIntolerance", {"criticality": "extreme"}),
    ],
)
def test_required_bindings_are_enforced(name: str, changes: dict[str, Any]) -> None:
    resource = {**SAMPLES[name][0], **changes}
    with pytest.raises(Unprocessable) as refused:
        parse(KINDS[name], resource)
    assert refused.value.status == 422
    assert "weird" not in str(refused.value.extra)


@pytest.mark.parametrize("data", ["!!!!", "@@@@@@@@", "____", "", "aGVsbG8", 17])
def test_attachment_data_must_be_base64_as_sent(data: Any) -> None:
    resource = document(content=[{"attachment": {"contentType": "text/plain", "data": data}}])
    with pytest.raises(Unprocessable) as refused:
        parse(KINDS["DocumentReference"], resource)
    assert refused.value.extra["errors"][0]["loc"] == ["content", "0", "attachment", "data"]


def test_an_unknown_contained_type_is_400_not_500() -> None:
    from akson_common.errors import BadRequest

    for contained in ([{"resourceType": "Nonsense", "id": "x"}], ["x"], {"a": 1}):
        with pytest.raises(BadRequest):
            parse(KINDS["DocumentReference"], document(contained=contained))
    known = document(contained=[{"resourceType": "Practitioner", "id": "p1"}])
    assert parse(KINDS["DocumentReference"], known).status == "current"
