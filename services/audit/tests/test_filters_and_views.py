"""The auditor's query → database selector, the stored document → view, the CLI table."""

from __future__ import annotations

from datetime import UTC, datetime

from audit.chain import Head, extend
from audit.cli import TABLE_COLUMNS, table
from audit.models import DecisionFilter, view
from audit.records import query_fields, sanitise
from audit.store import decision_indexes


def test_every_filter_maps_to_an_extracted_field() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    selector = DecisionFilter(
        patient="17858000076",
        practitioner="9144900",
        organisation="974760673",
        municipality="4601",
        from_=start,
        outcome="deny",
        reason="no_care_relation",
        emergency=True,
    ).selector()
    assert selector == {
        "patient": "17858000076",
        "hpr": "9144900",
        "organisation": "974760673",
        "municipality": "4601",
        "reasons": "no_care_relation",
        "emergency": True,
        "allow": False,
        "at": {"$gte": start},
    }
    assert DecisionFilter().selector() == {}


def test_every_filtered_field_has_an_index_led_by_it() -> None:
    leading = {next(iter(index.document["key"])) for index in decision_indexes()}
    assert {"patient", "hpr", "organisation", "municipality", "emergency", "reasons", "at"} <= (
        leading
    )


def stored_document() -> dict[str, object]:
    entry = {
        "decision_id": "d-1",
        "timestamp": "2026-11-22T01:00:00.5Z",
        "input": {
            "subject": {"id": "hpr:9144900", "kind": "practitioner", "hpr_number": "9144900"},
            "action": "read",
            "resource": {"type": "DocumentReference", "patient": "17858000076"},
            "context": {"emergency_reason": "life_threatening"},
        },
        "result": {"allow": True, "reasons": ["emergency"], "obligations": ["notify_patient"]},
    }
    (link,) = extend(Head(), [sanitise(entry)])
    return {
        "_id": "d-1",
        "position": 1,
        "hash": link.hash,
        "record": link.record,
        **query_fields(link.record),
    }


def test_the_view_says_who_what_when_and_on_what_basis() -> None:
    item = view(stored_document())
    assert (item.position, item.decision_id, item.actor, item.hpr) == (
        1,
        "d-1",
        "hpr:9144900",
        "9144900",
    )
    assert item.allow and item.reasons == ["emergency"]
    assert item.emergency_reason == "life_threatening"
    assert item.obligations == ["notify_patient"]


def test_the_cli_table_lines_up_and_shouts_denials() -> None:
    allowed = view(stored_document()).model_dump(mode="json")
    denied = {**allowed, "position": 2, "allow": False, "reasons": ["no_legal_basis"]}
    lines = table([allowed, denied], TABLE_COLUMNS).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("#") and set(lines[1]) <= {"-", " "}
    assert "allow" in lines[2] and "DENY" in lines[3] and "no_legal_basis" in lines[3]
    assert "2026-11-22 01:00:00" in lines[2]
    assert len({line.index("DENY") if "DENY" in line else None for line in lines[3:]}) == 1
