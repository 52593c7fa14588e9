"""Includes without servers: parameters, references, and what a fetch refused leaves out."""

from __future__ import annotations

from typing import Any

import pytest

from akson_common.errors import BadRequest
from akson_common.fhir import capability_statement, resource_capability
from gateway.includes import Fetcher, Include, add_includes, patient_types, references, split_query

BASE = "https://fhir.example/fhir/R4"


def test_the_query_is_split_into_the_owners_part_and_the_includes() -> None:
    kept, includes, revincludes = split_query(
        "patient=1&_include=Observation:has-member:Observation&_revinclude=Consent:patient"
    )
    assert kept == [("patient", "1")]
    assert includes == [Include("Observation", "has-member", "Observation")]
    assert revincludes == [Include("Consent", "patient")]
    for bad in ("_include=*", "_include=Observation", "_include=observation:patient"):
        with pytest.raises(BadRequest):
            split_query(bad)


def test_references_are_read_from_the_parameters_element() -> None:
    resource = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/1"},
        "hasMember": [
            {"reference": "Observation/a"},
            {"reference": "https://elsewhere/Observation/b"},
            {"reference": "DiagnosticReport/c"},
        ],
    }
    assert references(resource, Include("Observation", "patient")) == ["Patient/1"]
    assert references(resource, Include("Observation", "has-member")) == [
        "Observation/a",
        "DiagnosticReport/c",
    ]
    assert references(resource, Include("Observation", "has-member", "Observation")) == [
        "Observation/a"
    ]


class Readable(Fetcher):
    """Answers as the owners would for a caller who may read only ``readable``."""

    def __init__(self, readable: dict[str, dict[str, Any]]) -> None:
        self.readable = readable
        self.asked: list[str] = []

    async def read(self, reference: str) -> dict[str, Any] | None:
        self.asked.append(reference)
        return self.readable.get(reference)

    async def search(self, resource_type: str, query: list[tuple[str, str]]) -> list[Any]:
        return [r for r in self.readable.values() if r["resourceType"] == resource_type]


async def test_what_the_caller_may_not_read_is_not_included_and_not_counted() -> None:
    match = {
        "resourceType": "Observation",
        "id": "m",
        "hasMember": [{"reference": "Observation/ok"}, {"reference": "Observation/secret"}],
    }
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{"resource": match}],
    }
    fetcher = Readable(
        {
            "Observation/ok": {"resourceType": "Observation", "id": "ok"},
            "Consent/c": {"resourceType": "Consent", "id": "c"},
        }
    )
    await add_includes(
        bundle,
        [Include("Observation", "has-member")],
        [Include("Consent", "patient")],
        fetcher,
        BASE,
    )
    assert fetcher.asked == ["Observation/ok", "Observation/secret"]
    assert [(e["resource"]["id"], e.get("search", {}).get("mode")) for e in bundle["entry"]] == [
        ("m", None),
        ("ok", "include"),
        ("c", "include"),
    ]
    assert bundle["total"] == 1


def test_everything_gathers_the_types_searchable_by_patient() -> None:
    journal = capability_statement(
        "j",
        BASE,
        [
            resource_capability("Observation", ["search-type"], [("patient", "reference")]),
            resource_capability("Practitioner", ["read"]),
        ],
    )
    consent = capability_statement(
        "c", BASE, [resource_capability("Consent", ["search-type"], [("patient", "reference")])]
    )
    assert patient_types({"journal": journal, "consent": consent}) == ["Observation", "Consent"]
