"""Access facts from the projection, obligations, and ETags."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from akson_common.auth import Principal
from akson_common.errors import PreconditionFailed, PreconditionRequired
from akson_common.etags import expected_version
from akson_common.policy import Decision
from akson_common.projections import access_facts, field_key
from journal.access import mask_addresses, obligations, resource_ref, tuple_ref
from journal.store import ACCESS_FIELDS, access_tuple, tuple_selector

TODAY = date(2026, 6, 1)


def test_only_relations_in_force_reach_the_policy() -> None:
    document = {
        "municipality": "4601",
        "address_protection": "strengt_fortrolig",
        "relations": {
            field_key("a"): {
                "relation_id": "a",
                "kind": "gp_list",
                "practitioner": "1",
                "period_start": "2020-01-01",
            },
            field_key("b"): {
                "relation_id": "b",
                "kind": "home_care",
                "unit": "u",
                "period_start": "2020-01-01",
                "period_end": "2026-05-31",
            },
            field_key("c"): {
                "relation_id": "c",
                "kind": "dental",
                "unit": "u",
                "period_start": "2026-06-02",
            },
        },
    }
    context = access_facts("p", document, TODAY)
    assert [r["relation_id"] for r in context.care_relations] == ["a"]
    assert context.care_relations[0]["patient"] == "p"
    assert context.patient is not None and context.patient.protected_address
    assert context.patient.municipality == "4601"


def test_directives_carry_every_field_and_whether_they_are_active() -> None:
    directive: dict[str, Any] = {
        "directive_id": "d",
        "version": 3,
        "patient": "p",
        "kind": "block",
        "status": "active",
        "practitioner": "9",
        "categories": [],
        "period_start": "2026-01-01",
        "period_end": None,
    }
    withdrawn = {**directive, "directive_id": "w", "status": "withdrawn"}
    expired = {**directive, "directive_id": "e", "period_end": "2026-05-01"}
    document = {
        "directives": {field_key(d["directive_id"]): d for d in (directive, withdrawn, expired)}
    }
    context = access_facts("p", document, TODAY)
    active = {d["directive_id"]: d["active"] for d in context.directives}
    assert active == {"d": True, "w": False, "e": False}
    assert {d["practitioner"] for d in context.directives} == {"9"}


def test_an_unknown_patient_has_no_relations_and_plain_facts() -> None:
    context = access_facts("p", None, TODAY)
    assert context.care_relations == [] and context.directives == []
    assert context.patient is not None and not context.patient.protected_address


def test_field_keys_have_no_dots() -> None:
    assert "." not in field_key("rel.with.dots") and field_key("a") != field_key("b")


def test_obligations_are_read_as_strings_or_objects() -> None:
    decision = Decision(
        allow=True, obligations=("notify_patient", {"code": "review_emergency_access"})
    )
    assert obligations(decision) == {"notify_patient", "review_emergency_access"}


def test_contained_addresses_are_masked() -> None:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "contained": [{"resourceType": "Patient", "id": "p", "address": [{"city": "X"}]}],
    }
    masked = mask_addresses(resource)
    assert "address" not in masked["contained"][0]
    assert resource["contained"][0]["address"]  # the stored copy is untouched


def test_the_policy_sees_access_attributes_never_content() -> None:
    stored = {
        "_id": "r1",
        "type": "DocumentReference",
        "patient": "p",
        "category": "general",
        "sensitivity": "normal",
        "unit": "u",
        "organisation": "o",
        "municipality": "4601",
        "author": "9",
        "withheld": True,
        "resource": {"content": "secret"},
    }
    ref = resource_ref(stored)
    assert ref.withheld_from_patient and ref.id == "r1" and ref.author == "9"
    assert "secret" not in ref.model_dump_json()
    values = access_tuple(stored)
    assert len(values) == len(ACCESS_FIELDS)
    assert tuple_ref("p", values).model_dump(exclude={"id"}) == ref.model_dump(exclude={"id"})
    assert tuple_selector(values)["withheld"] is True


def test_if_match_is_parsed_and_required_for_updates() -> None:
    assert expected_version('W/"3"', required=True) == 3
    assert expected_version('"4"', required=True) == 4
    assert expected_version(None, required=False) is None
    with pytest.raises(PreconditionRequired):
        expected_version(None, required=True)
    with pytest.raises(PreconditionFailed):
        expected_version("3", required=True)


def test_a_principal_is_a_writer_by_hpr_number_or_client_id() -> None:
    from journal.access import Caller

    assert Caller(Principal(id="hpr:1", kind="practitioner", hpr_number="1")).writer == "1"
    assert Caller(Principal(id="lab-client", kind="system")).writer == "lab-client"
