"""Bundles without servers: what an entry may be, and how references are resolved."""

from __future__ import annotations

from typing import Any

import pytest

from akson_common.errors import BadRequest
from gateway.bundles import ORDER, _resolve, caller_headers, parse_bundle, parse_entry, status_line

BASE = "https://fhir.example/fhir/R4"


def item(method: str, url: str, resource: dict[str, Any] | None = None, **request: Any) -> Any:
    entry: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        entry["resource"] = resource
    return entry


def test_an_entry_names_its_type_path_query_and_conditions() -> None:
    entry = parse_entry(
        0,
        item("PUT", f"{BASE}/Flag/f1", {"resourceType": "Flag", "id": "f1"}, ifMatch='W/"2"'),
        BASE,
    )
    assert (entry.method, entry.resource_type, entry.path) == ("PUT", "Flag", "/fhir/R4/Flag/f1")
    assert entry.resource_id == "f1" and entry.conditions == {"if-match": 'W/"2"'}
    search = parse_entry(1, item("GET", "Flag?patient=1&_count=2"), BASE)
    assert (search.path, search.query, search.resource_id) == (
        "/fhir/R4/Flag",
        "patient=1&_count=2",
        None,
    )
    create = parse_entry(2, item("POST", "Flag", {"resourceType": "Flag"}, ifNoneExist="x=1"), BASE)
    assert create.conditions == {"if-none-exist": "x=1"}


@pytest.mark.parametrize(
    "bad",
    [
        {"resource": {}},  # no request
        item("PATCH", "Flag/1"),
        item("GET", ""),
        item("GET", "https://elsewhere.example/fhir/R4/Flag/1"),
        item("GET", "flag/1"),
        item("POST", "Flag"),  # no resource
        item("POST", "Flag", {"resourceType": "Observation"}),
        item("GET", "Flag/1", {"resourceType": "Flag"}),
        item("PUT", "Flag", {"resourceType": "Flag"}),  # no id in the url
        item("PUT", "Flag/1", {"resourceType": "Flag", "id": "2"}),
        item("DELETE", "Flag"),
    ],
)
def test_a_malformed_entry_is_refused_naming_it(bad: Any) -> None:
    with pytest.raises(BadRequest, match="entry 3"):
        parse_entry(3, bad, BASE)


def test_a_bundle_is_a_batch_or_a_transaction_of_bounded_size() -> None:
    entries = [item("GET", "Flag/1")] * 3
    assert (
        parse_bundle({"resourceType": "Bundle", "type": "batch", "entry": entries}, BASE, 3)[0]
        == "batch"
    )
    for document in (
        {"resourceType": "Bundle", "type": "document"},
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "transaction", "entry": entries},
    ):
        with pytest.raises(BadRequest):
            parse_bundle(document, BASE, 2)


def test_references_to_entries_created_earlier_are_resolved_anywhere_in_a_resource() -> None:
    created = {"urn:uuid:a": "Observation/123"}
    resource = {
        "resourceType": "Observation",
        "hasMember": [{"reference": "urn:uuid:a"}, {"reference": "urn:uuid:b"}],
        "subject": {"reference": "Patient/1"},
        "note": [{"text": "urn:uuid:a"}],
    }
    resolved = _resolve(resource, created)
    assert resolved["hasMember"] == [{"reference": "Observation/123"}, {"reference": "urn:uuid:b"}]
    assert resolved["subject"] == {"reference": "Patient/1"}
    assert resolved["note"] == [{"text": "urn:uuid:a"}]  # only references


def test_the_processing_order_and_what_of_the_caller_each_entry_carries() -> None:
    assert sorted(ORDER, key=ORDER.__getitem__) == ["DELETE", "POST", "PUT", "GET"]
    headers = caller_headers({"Authorization": "Bearer t", "Cookie": "x", "Akson-Purpose": "nav"})
    assert headers == {"Authorization": "Bearer t", "Akson-Purpose": "nav"}
    assert status_line(412) == "412 Precondition Failed"
