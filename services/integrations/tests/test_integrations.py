"""Integrations logic without servers: the payroll ledger and its corrections, order thresholds,
file formats, withholding in dead letters, and the routes' wiring."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from akson_common.events import SuppliesUsedV1, VisitCompletedV1
from akson_common.identifiers import synthetic_national_id
from integrations.exports import (
    PAYROLL_COLUMNS,
    exportable,
    file_segment,
    order_records,
    orders_json,
    timesheet_csv,
    timesheet_lines,
    withheld,
)
from integrations.logistics import counted, threshold
from integrations.main import create_app
from integrations.models import (
    StockCounter,
    TimesheetEntry,
    Violation,
    token,
)
from integrations.payroll import cost_centre, next_state, valid, worked_hours
from integrations.settings import IntegrationsSettings

AT = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
PATIENT = synthetic_national_id(date(1971, 3, 14), 0)
SETTINGS = IntegrationsSettings(
    service_name="integrations",
    environment="development",
    cost_centres={"999000029": "CC-29"},
    order_thresholds={"gloves-m": 100},
)


def visit(**overrides: Any) -> VisitCompletedV1:
    return VisitCompletedV1.model_validate(
        {
            "encounter_id": "enc-1",
            "version": 1,
            "performer": "1000001",
            "unit": "999000029",
            "visit_type": "home_care",
            "start": "2026-11-20T07:00:00Z",
            "end": "2026-11-20T08:30:00Z",
            **overrides,
        }
    )


# -- payroll ledger --------------------------------------------------------------------------


def test_worked_hours_and_the_norwegian_calendar_day() -> None:
    assert worked_hours(visit()) == 1.5
    state, added = next_state(
        None, visit(start="2026-11-19T23:30:00Z", end="2026-11-20T00:15:00Z"), SETTINGS, AT
    )
    assert state.day == date(2026, 11, 20)  # 00:30 in Oslo
    assert [(e.kind, e.hours, e.day) for e in added] == [("normal", 0.75, date(2026, 11, 20))]


def test_a_unit_without_a_mapping_is_its_own_cost_centre() -> None:
    assert cost_centre(SETTINGS, "999000029") == "CC-29"
    assert cost_centre(SETTINGS, "999000037") == "999000037"


def test_a_first_version_adds_a_normal_entry_keyed_by_encounter_and_version() -> None:
    state, added = next_state(None, visit(), SETTINGS, AT)
    assert [e.id for e in added] == ["enc-1:1:normal"]
    assert added[0].cost_centre == "CC-29"
    assert state.entries == added


def test_a_correction_reverses_the_previous_version_and_adds_the_new() -> None:
    first, _ = next_state(None, visit(), SETTINGS, AT)
    corrected = visit(version=2, performer="1000002", unit="999000037", end="2026-11-20T09:00:00Z")
    second, added = next_state(first, corrected, SETTINGS, AT)
    assert [(e.id, e.kind, e.employee_id, e.unit, e.cost_centre, e.hours) for e in added] == [
        ("enc-1:2:reversal", "reversal", "1000001", "999000029", "CC-29", -1.5),
        ("enc-1:2:correction", "correction", "1000002", "999000037", "999000037", 2.0),
    ]
    assert len(second.entries) == 3
    assert sum(e.hours for e in second.entries) == 2.0


def test_entered_in_error_only_reverses() -> None:
    first, _ = next_state(None, visit(), SETTINGS, AT)
    gone, added = next_state(first, visit(version=2, status="entered-in-error"), SETTINGS, AT)
    assert [(e.kind, e.hours) for e in added] == [("reversal", -1.5)]
    assert sum(e.hours for e in gone.entries) == 0
    # a visit first seen as entered-in-error contributes nothing, and a later version counts
    nothing, none_added = next_state(None, visit(status="entered-in-error"), SETTINGS, AT)
    assert none_added == []
    _, revived = next_state(nothing, visit(version=2), SETTINGS, AT)
    assert [(e.kind, e.hours) for e in revived] == [("correction", 1.5)]


def test_a_visit_ending_before_it_starts_is_invalid() -> None:
    assert not valid(visit(end="2026-11-20T06:00:00Z"))
    assert valid(visit(end="2026-11-20T06:00:00Z", status="entered-in-error"))


# -- timesheet files -------------------------------------------------------------------------


def entry(id: str, employee: str, hours: float, kind: str = "normal") -> TimesheetEntry:
    return TimesheetEntry.model_validate(
        {
            "id": id,
            "encounter_id": id.split(":")[0],
            "version": 1,
            "kind": kind,
            "employee_id": employee,
            "day": "2026-11-20",
            "unit": "999000029",
            "cost_centre": "CC-29",
            "hours": hours,
            "recorded_at": AT,
        }
    )


def test_timesheet_lines_sum_per_employee_day_unit_cost_centre_and_kind() -> None:
    entries = [
        entry("a:1:normal", "1000001", 1.5),
        entry("b:1:normal", "1000001", 0.75),
        entry("c:1:normal", "1000002", 2.0),
        entry("a:2:reversal", "1000001", -1.5, "reversal"),
    ]
    lines = timesheet_lines(entries)
    assert [(x["employee_id"], x["line_kind"], x["hours"], x["visits"]) for x in lines] == [
        ("1000001", "normal", 2.25, 2),
        ("1000001", "reversal", -1.5, 1),
        ("1000002", "normal", 2.0, 1),
    ]
    # the reference is stable for the same entries, whatever their order
    assert timesheet_lines(list(reversed(entries))) == lines
    text = timesheet_csv({}, lines)
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert tuple(rows[0]) == PAYROLL_COLUMNS
    assert rows[2][4] == "-1.50"
    assert rows[1][:7] == ["1000001", "2026-11-20", "999000029", "CC-29", "2.25", "normal", "2"]


def test_after_day_end_holds_a_day_until_it_is_over() -> None:
    today = date(2026, 11, 21)
    assert exportable(date(2026, 11, 21), today, closed_days_only=False)
    assert not exportable(date(2026, 11, 21), today, closed_days_only=True)
    assert exportable(date(2026, 11, 20), today, closed_days_only=True)


def test_tokens_never_hold_long_digit_runs() -> None:
    for n in range(2000):
        value = token(str(n))
        assert not any(value[i : i + 11].isdigit() for i in range(len(value) - 10))


# -- logistics -------------------------------------------------------------------------------


def test_thresholds_per_item_or_default() -> None:
    assert threshold(SETTINGS, "gloves-m") == 100
    assert threshold(SETTINGS, "bandage-10cm") == 10


def test_an_order_is_placed_when_use_reaches_the_threshold() -> None:
    counter = StockCounter(id="u/bandage", unit="u", item="bandage")
    counter = counted(counter, "use-1", 4, 10, at=AT, day="2026-11-20")
    counter = counted(counter, "use-2", 4, 10, at=AT, day="2026-11-20")
    assert (counter.accumulated, counter.orders) == (8, [])
    counter = counted(counter, "use-3", 3, 10, at=AT, day="2026-11-21")
    assert counter.accumulated == 0
    (order,) = counter.orders
    assert (order.quantity, order.sequence, order.day) == (11, 1, date(2026, 11, 21))
    assert counter.applied == ["use-1", "use-2", "use-3"]
    assert order.id.startswith("ord-")
    records = order_records(counter.orders)
    document = json.loads(orders_json({"format": "akson.replenishment-order.v1"}, records))
    assert document["orders"] == [
        {"order_id": order.id, "unit": "u", "item": "bandage", "quantity": 11, "date": "2026-11-21"}
    ]


def test_a_usage_event_cannot_carry_a_patient() -> None:
    with pytest.raises(ValueError, match="patient"):
        SuppliesUsedV1.model_validate(
            {
                "usage_id": "u1",
                "unit": "u",
                "used_at": "2026-11-20T10:00:00Z",
                "items": [],
                "patient": PATIENT,
            }
        )


# -- dead letters ----------------------------------------------------------------------------


def test_a_dead_letter_withholds_what_the_policy_flagged_and_any_national_id() -> None:
    policy_input = {
        "recipient": "logistics",
        "file_name": f"logistics/2026-11-20/{PATIENT}/exp-x.json",
        "payload": {
            "header": {"unit": PATIENT},
            "records": [{"item": f"dressing-{PATIENT}", "note": "sår", "quantity": 12}],
        },
    }
    kept = withheld(
        policy_input,
        [
            Violation(path="payload/records/0/note", code="forbidden_field"),
            Violation(path="payload/records/9/item", code="national_id_in_value"),
            Violation(path="payload/nothing/here", code="field_not_allowed"),
        ],
    )
    assert PATIENT not in json.dumps(kept)
    assert kept["payload"]["records"][0] == {
        "item": "dressing-[withheld]",
        "note": "[withheld]",
        "quantity": 12,
    }
    assert kept["payload"]["header"]["unit"] == "[withheld]"
    assert json.dumps(policy_input).count(PATIENT) == 3  # the input itself is left alone


def test_a_unit_never_climbs_out_of_the_export_folder() -> None:
    assert file_segment("../../etc") == "_.._etc"
    assert file_segment("999000029") == "999000029"
    assert file_segment("") == "_"


# -- wiring ----------------------------------------------------------------------------------


def test_the_service_subscribes_to_the_journal_events_with_dead_letter_topics() -> None:
    client = TestClient(create_app(SETTINGS))
    subscriptions = {s["topic"]: s for s in client.get("/dapr/subscribe").json()}
    assert set(subscriptions) >= {"journal.visit.completed", "journal.supplies.used"}
    for topic in ("journal.visit.completed", "journal.supplies.used"):
        assert subscriptions[topic]["deadLetterTopic"] == f"{topic}.deadletter"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/reconciliation", "/dead-letters"} <= set(paths)


async def test_a_batch_that_keeps_failing_is_set_aside_and_the_others_go_out() -> None:
    from pymongo.errors import AutoReconnect

    from integrations.exports import MAX_BATCH_ATTEMPTS, Exporter

    exporter = Exporter.__new__(Exporter)
    exporter._failures = {}
    calls: list[str] = []

    async def export_batch(feed: Any, batch: str) -> int:
        calls.append(batch)
        if batch == "poison":
            raise ValueError("cannot render this batch")
        if batch == "database-away":
            raise AutoReconnect("away")
        return 1

    exporter.export_batch = export_batch  # type: ignore[method-assign]
    feed: Any = type("Feed", (), {"recipient": "payroll"})()
    for _ in range(MAX_BATCH_ATTEMPTS + 2):
        assert await exporter._attempt(feed, "poison") == 0
        assert await exporter._attempt(feed, "good") == 1
    assert calls.count("poison") == MAX_BATCH_ATTEMPTS
    assert calls.count("good") == MAX_BATCH_ATTEMPTS + 2
    with pytest.raises(AutoReconnect):  # the database away: the sweep waits, nothing set aside
        await exporter._attempt(feed, "database-away")
    assert "database-away" not in exporter._failures
