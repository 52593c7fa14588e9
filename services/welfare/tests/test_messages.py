"""Reading device messages, answering them, and the rules that turn their entries into alerts
(welfare.bundles, welfare.rules). Messages are built as a hub sends them."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from akson_common.errors import Unprocessable
from welfare.bundles import (
    CATEGORY_SYSTEM,
    ENTRY_SYSTEM,
    read_message,
    receipt,
    validated_entries,
    verdict_of,
)
from welfare.models import Threshold
from welfare.rules import Finding, evaluate

PATIENT = "01017012345"
LOINC = "http://loinc.org"


def header(message_id: str | None = "msg-1", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "MessageHeader",
        "id": message_id,
        "eventCoding": {"system": "urn:akson:welfare-event", "code": "device-report"},
        "source": {"endpoint": "https://hub.example/fhir"},
        **fields,
    }


def observation(device: str = "bp-1", value: float = 120, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "effectiveDateTime": "2026-12-01T08:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "code": "/min"},
        "device": {"reference": f"Device/{device}"},
        **fields,
    }


def blood_pressure(device: str = "bp-1", systolic: float = 120, diastolic: float = 80) -> Any:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "effectiveDateTime": "2026-12-01T08:00:00Z",
        "device": {"reference": f"Device/{device}"},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": systolic, "unit": "mmHg"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": diastolic, "unit": "mmHg"},
            },
        ],
    }


def dose(device: str = "disp-1", status: str = "not-done") -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "status": status,
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.whocc.no/atc", "code": "N02BE01"}]
        },
        "effectiveDateTime": "2026-12-01T08:00:00Z",
        "device": [{"reference": f"Device/{device}"}],
    }


def alarm(device: str = "alarm-1", status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "status": status,
        "code": {"coding": [{"system": "urn:akson:welfare-alarm", "code": "fall"}]},
        "period": {"start": "2026-12-01T08:00:00Z"},
        "author": {"reference": f"Device/{device}"},
    }


def message(*resources: dict[str, Any], message_id: str = "msg-1") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "message",
        "timestamp": "2026-12-01T08:00:05Z",
        "entry": [
            {"fullUrl": f"urn:uuid:{message_id}", "resource": header(message_id)},
            *({"resource": resource} for resource in resources),
        ],
    }


# -- the envelope and the receipt -------------------------------------------------------------


def refused(body: Any) -> list[str]:
    with pytest.raises(Unprocessable) as caught:
        read_message(body)
    return [str(part) for part in caught.value.extra["errors"][0]["loc"]]


def test_a_message_names_its_id_its_device_and_its_entries() -> None:
    read = read_message(message(dose(), dose(status="completed"), message_id="m-7"))
    assert (read.id, read.device) == ("m-7", "disp-1")
    assert [(e.index, e.resource_type) for e in read.entries] == [
        (1, "MedicationAdministration"),
        (2, "MedicationAdministration"),
    ]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ([], ["resourceType"]),
        ({"resourceType": "Patient"}, ["resourceType"]),
        ({**message(dose()), "type": "collection"}, ["type"]),
        ({**message(dose()), "entry": message(dose())["entry"][:1]}, ["entry"]),
        ({**message(dose()), "entry": "x"}, ["entry"]),
        (
            {**message(dose()), "entry": [{"resource": dose()}, {"resource": dose()}]},
            ["entry", "0", "resource"],
        ),
        (
            {**message(dose()), "entry": [{"resource": header(None)}, {"resource": dose()}]},
            ["entry", "0", "resource", "id"],
        ),
        (
            {**message(dose()), "entry": [{"resource": header("a b")}, {"resource": dose()}]},
            ["entry", "0", "resource", "id"],
        ),
        (message({"resourceType": "Patient"}), ["entry", "1", "resource", "resourceType"]),
        (message(["not", "a", "resource"]), ["entry", "1", "resource", "resourceType"]),  # type: ignore[arg-type]
        (message({**observation(), "device": None}), ["entry", "1", "resource", "device"]),
        (
            message({**observation(), "device": {"reference": "Patient/1"}}),
            ["entry", "1", "resource", "device"],
        ),
        (message({**dose(), "device": []}), ["entry", "1", "resource", "device"]),
        (
            message({**alarm(), "author": {"reference": "Device/"}}),
            ["entry", "1", "resource", "author"],
        ),
        (message(dose("disp-1"), dose("disp-2")), ["entry"]),
    ],
)
def test_a_malformed_envelope_is_refused_where_it_is_wrong(body: Any, where: list[str]) -> None:
    assert refused(body) == where


def test_a_message_carries_a_bounded_number_of_entries() -> None:
    read_message(message(*[dose()] * 3), max_entries=3)
    with pytest.raises(Unprocessable):
        read_message(message(*[dose()] * 4), max_entries=3)


def test_entries_get_the_patient_the_welfare_category_and_their_origin() -> None:
    read = read_message(message(observation(), alarm("bp-1"), message_id="m-9"))
    measured, alarmed = validated_entries(read, PATIENT)
    assert measured.resource["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert alarmed.resource["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert {"system": CATEGORY_SYSTEM, "code": "welfare"} in [
        c for concept in measured.resource["category"] for c in concept["coding"]
    ]
    assert measured.resource["identifier"] == [{"system": ENTRY_SYSTEM, "value": "m-9.1"}]
    assert alarmed.resource["identifier"] == [{"system": ENTRY_SYSTEM, "value": "m-9.2"}]


def test_an_entry_about_someone_else_or_invalid_is_refused() -> None:
    other = {"reference": "Patient/02027012345"}
    with pytest.raises(Unprocessable):
        validated_entries(read_message(message({**dose(), "subject": other})), PATIENT)
    same = {"reference": f"Patient/{PATIENT}"}
    assert validated_entries(read_message(message({**dose(), "subject": same})), PATIENT)
    with pytest.raises(Unprocessable) as caught:
        validated_entries(read_message(message({**dose(), "status": 7})), PATIENT)
    assert caught.value.extra["errors"][0]["loc"][:3] == ["entry", "1", "resource"]
    with pytest.raises(Unprocessable):
        # a MessageHeader without its source is no valid message
        body = message(dose())
        body["entry"][0]["resource"].pop("source")
        validated_entries(read_message(body), PATIENT)


@pytest.mark.parametrize(
    ("verdict", "code"),
    [
        ("accepted", "ok"),
        ("unknown-device", "fatal-error"),
        ("device-not-assigned", "fatal-error"),
        ("consent-withdrawn", "fatal-error"),
    ],
)
def test_the_receipt_answers_the_message_with_its_verdict(verdict: Any, code: str) -> None:
    answer = receipt(read_message(message(dose(), message_id="m-3")), verdict)
    Bundle.model_validate(answer)
    response = answer["entry"][0]["resource"]
    assert answer["type"] == "message"
    assert response["resourceType"] == "MessageHeader"
    assert response["response"]["identifier"] == "m-3"
    assert response["response"]["code"] == code
    assert response["destination"] == [{"endpoint": "https://hub.example/fhir"}]
    assert response["response"]["details"]["reference"] == answer["entry"][1]["fullUrl"]
    assert verdict_of(answer) == verdict


# -- the rules -----------------------------------------------------------------------------


PULSE = Threshold(code="8867-4", low=40, high=120)


def findings(
    *resources: dict[str, Any], thresholds: list[Threshold] | None = None
) -> list[Finding]:
    return evaluate(read_message(message(*resources)).entries, thresholds or [])


def test_a_missed_dose_is_found_with_the_medication_and_the_time() -> None:
    (missed,) = findings(dose(status="not-done"), dose(status="completed"))
    assert (missed.rule, missed.entry, missed.code) == ("missed_dose", 1, "N02BE01")
    assert missed.code_system == "http://www.whocc.no/atc"
    assert missed.occurred_at == "2026-12-01T08:00:00Z"


def test_an_active_alarm_is_found_an_inactive_one_not() -> None:
    (raised,) = findings(alarm(status="active"), alarm(status="inactive"))
    assert (raised.rule, raised.code, raised.entry) == ("alarm", "fall", 1)


def test_a_measurement_out_of_the_patients_range_carries_the_numbers() -> None:
    (high,) = findings(observation(value=131), thresholds=[PULSE])
    assert (high.rule, high.value, high.low, high.high) == ("out_of_range", 131.0, 40, 120)
    assert (high.code, high.value_unit) == ("8867-4", "/min")
    (low,) = findings(observation(value=39.5), thresholds=[PULSE])
    assert low.value == 39.5


def test_a_measurement_in_range_or_without_a_threshold_raises_nothing() -> None:
    assert findings(observation(value=120), observation(value=40), thresholds=[PULSE]) == []
    assert findings(observation(value=300)) == []
    other_code = Threshold(code="59408-5", low=90)
    assert findings(observation(value=10), thresholds=[other_code]) == []
    other_system = Threshold(code="8867-4", system="urn:other", high=100)
    assert findings(observation(value=130), thresholds=[other_system]) == []


def test_components_are_measured_each_against_their_threshold() -> None:
    systolic = Threshold(code="8480-6", high=160)
    diastolic = Threshold(code="8462-4", low=50, high=100)
    found = findings(blood_pressure(systolic=170, diastolic=45), thresholds=[systolic, diastolic])
    assert [(f.code, f.value) for f in found] == [("8480-6", 170.0), ("8462-4", 45.0)]
    assert findings(blood_pressure(systolic=150, diastolic=90), thresholds=[systolic]) == []


def test_a_value_that_is_no_number_is_not_compared() -> None:
    odd = observation()
    odd["valueQuantity"] = {"value": True, "unit": "/min"}
    assert findings(odd, thresholds=[PULSE]) == []
