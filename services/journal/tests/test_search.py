"""Search parameters, cursors and Bundles (validated against the R4B models)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from akson_common.errors import BadRequest
from akson_common.fhir import operation_outcome
from journal.search import (
    MAX_COUNT,
    collection,
    date_bounds,
    decode_cursor,
    encode_cursor,
    history_bundle,
    parse_search,
    searchset,
)

RESOURCE = {
    "resourceType": "Flag",
    "id": "f1",
    "status": "active",
    "code": {"text": "x"},
    "subject": {"reference": "Patient/1"},
}


def test_parameters_are_parsed_and_codes_stripped_of_their_system() -> None:
    parameters = parse_search(
        [
            ("patient", "Patient/13018012345"),
            ("category", "urn:akson:category|general"),
            ("type", "note"),
            ("status", "current"),
            ("_count", "5"),
        ]
    )
    assert parameters.patient == "13018012345"
    assert parameters.category == "general" and parameters.type_code == "note"
    entry = {
        "type": "DocumentReference",
        "category": "general",
        "type_code": "note",
        "status": "current",
        "date": "2025-01-01T00:00:00Z",
    }
    assert parameters.matches("DocumentReference", entry)
    assert not parameters.matches("Flag", entry)
    for name, other in (("category", "dental"), ("type_code", "letter"), ("status", "superseded")):
        assert not parameters.matches("DocumentReference", {**entry, name: other})
    assert parameters.count == 5


def test_entered_in_error_is_left_out_unless_asked_for() -> None:
    plain = parse_search([("patient", "1")])
    assert plain.matches("Flag", {"type": "Flag", "status": "active"})
    assert not plain.matches("Flag", {"type": "Flag", "status": "entered-in-error"})
    asked = parse_search([("patient", "1"), ("status", "entered-in-error")])
    assert asked.matches("Flag", {"type": "Flag", "status": "entered-in-error"})


def test_count_is_capped_and_must_be_positive() -> None:
    assert parse_search([("_count", "100000")]).count == MAX_COUNT
    for bad in ("0", "-1", "x"):
        with pytest.raises(BadRequest):
            parse_search([("_count", bad)])


def test_unknown_or_repeated_parameters_are_refused() -> None:
    with pytest.raises(BadRequest):
        parse_search([("name", "x")])
    with pytest.raises(BadRequest):
        parse_search([("patient", "1"), ("patient", "2")])


def test_lenient_handling_ignores_unknown_parameters_and_subject_is_patient() -> None:
    parameters = parse_search([("subject", "Patient/1"), ("name", "x")], lenient=True)
    assert parameters.patient == "1"
    assert parameters.kept == (("patient", "Patient/1"),)


def test_id_identifier_last_updated_and_sort() -> None:
    parameters = parse_search(
        [
            ("patient", "1"),
            ("_id", "a,b"),
            ("identifier", "urn:lab|42"),
            ("_lastUpdated", "ge2025-01-01"),
            ("_sort", "-date"),
        ]
    )
    entry: dict[str, Any] = {
        "_id": "a",
        "type": "Flag",
        "status": "active",
        "resource": {
            "identifier": [{"system": "urn:lab", "value": "42"}],
            "meta": {"lastUpdated": "2025-02-01T00:00:00Z"},
        },
    }
    assert parameters.matches("Flag", entry)
    assert not parameters.matches("Flag", {**entry, "_id": "c"})
    assert not parameters.matches(
        "Flag", {**entry, "resource": {**entry["resource"], "identifier": []}}
    )
    old = {**entry["resource"], "meta": {"lastUpdated": "2024-12-31T23:59:59Z"}}
    assert not parameters.matches("Flag", {**entry, "resource": old})
    assert parse_search([("identifier", "42")]).identifier == (None, "42")
    with pytest.raises(BadRequest):
        parse_search([("_sort", "date")])


def test_date_prefixes_become_ranges() -> None:
    assert date_bounds("ge2025-01-01") == [("$gte", "2025-01-01T00:00:00Z")]
    assert date_bounds("le2025-01-31") == [("$lt", "2025-02-01T00:00:00Z")]
    assert date_bounds("gt2025-01-31") == [("$gte", "2025-02-01T00:00:00Z")]
    assert date_bounds("lt2025-01-31") == [("$lt", "2025-01-31T00:00:00Z")]
    assert date_bounds("2025-01-31") == [
        ("$gte", "2025-01-31T00:00:00Z"),
        ("$lt", "2025-02-01T00:00:00Z"),
    ]
    assert date_bounds("ge2025-01-01T10:00:00+01:00") == [("$gte", "2025-01-01T09:00:00Z")]
    with pytest.raises(BadRequest):
        date_bounds("ge-yesterday")
    both = parse_search([("date", "ge2025-01-01"), ("date", "le2025-06-30")])

    def on(day: str) -> bool:
        return both.matches("Flag", {"type": "Flag", "status": "active", "date": day})

    assert on("2025-01-01T00:00:00Z") and on("2025-06-30T23:59:59Z")
    assert not on("2024-12-31T23:59:59Z") and not on("2025-07-01T00:00:00Z")
    assert not on("")


def test_cursors_round_trip_and_forgeries_are_refused() -> None:
    key = "2025-01-01T00:00:00Z|0b4f7c2e-8d1a-4c1e-9a51-3e0f2b6d7a10"
    assert decode_cursor(encode_cursor(key)) == key
    assert parse_search([("_cursor", encode_cursor(key))]).cursor == key
    for forged in ("%%%", encode_cursor("zzz"), encode_cursor("9999|x")):
        with pytest.raises(BadRequest):
            decode_cursor(forged)


def test_bundles_are_valid_fhir() -> None:
    found = searchset(
        "http://x/fhir/R4",
        "Flag",
        [RESOURCE],
        total=7,
        self_link="http://x/fhir/R4/Flag?patient=1",
        next_link="http://x/fhir/R4/Flag?patient=1&_cursor=abc",
    )
    bundle = Bundle.model_validate(found)
    assert bundle.total == 7 and [link.relation for link in bundle.link or []] == ["self", "next"]
    history = history_bundle(
        "http://x/fhir/R4",
        [
            {
                "resource": RESOURCE,
                "version": 2,
                "updated_at": "2025-01-01T00:00:00Z",
                "method": "PUT",
            }
        ],
    )
    assert Bundle.model_validate(history).type == "history"
    summary = collection("http://x/fhir/R4", [RESOURCE], timestamp="2025-01-01T00:00:00Z")
    assert Bundle.model_validate(summary).type == "collection"


def test_operation_outcomes_are_valid_fhir() -> None:
    outcome = OperationOutcome.model_validate(
        operation_outcome(422, "not valid", locations=["content.0.attachment.data"])
    )
    assert outcome.issue[0].code == "processing"
    assert operation_outcome(428, "x")["issue"][0]["code"] == "required"


def test_the_capability_statement_is_valid_and_lists_every_type() -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    from journal.kinds import KINDS
    from journal.search import RESOURCE_TYPES, capability_statement

    statement = CapabilityStatement.model_validate(
        capability_statement("http://x/fhir/R4", "2026-01-01T00:00:00Z")
    )
    assert statement.fhirVersion == "4.0.1"
    assert set(RESOURCE_TYPES) == set(KINDS)


def test_hl7_result_categories_search_as_akson_categories() -> None:
    lab = parse_search([("category", "http://terminology.hl7.org/CodeSystem/v2-0074|LAB")])
    assert lab.category == "lab_result"
    imaging = "http://terminology.hl7.org/CodeSystem/observation-category|imaging"
    assert parse_search([("category", imaging)]).category == "radiology"
