"""Integrations on the real stack: visits published as the journal publishes them become
timesheet files, supply use becomes order files, replays change nothing, corrections come as
offsetting lines, and a payload carrying a patient identifier is refused by the export policy,
dead-lettered with its reasons and alerted, never written.

Events go through a sidecar exactly as the journal's outbox would publish them: the event is
the contract (``VisitCompletedV1``, ``SuppliesUsedV1``), not the journal's API.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections import defaultdict
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from akson_common.identifiers import synthetic_national_id
from masterdata.seed import generate
from tests.integration.conftest import Platform, eventually

pytestmark = pytest.mark.integration

VISITS = "journal.visit.completed"
SUPPLIES = "journal.supplies.used"
DAY = "2026-11-20"
SCOPE = "IntegrationExport.search"
PATIENT = synthetic_national_id(date(1971, 3, 14), 0)
_units = iter(range(100, 1000))
published: list[dict[str, Any]] = []


def new_unit() -> str:
    return f"999{next(_units):03d}{uuid.uuid4().int % 1000:03d}"


def publish(
    http: httpx.Client, platform: Platform, topic: str, data: dict[str, Any], event_id: str = ""
) -> dict[str, Any]:
    envelope = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "akson/journal",
        "type": f"{topic}.v1",
        "subject": data["unit"],
        "datacontenttype": "application/json",
        "data": data,
    }
    platform.publish("journal", topic, envelope)
    published.append({"topic": topic, "envelope": envelope})
    return envelope


def visit(
    encounter: str, performer: str, unit: str, start: str, end: str, version: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "encounter_id": encounter,
        "version": version,
        "performer": performer,
        "unit": unit,
        "organisation": "974760673",
        "municipality": "4601",
        "visit_type": "home_care",
        "start": start,
        "end": end,
        **extra,
    }


def at(hhmm: str, day: str = DAY) -> str:
    """A UTC instant on ``day``."""
    return f"{day}T{hhmm}:00Z"


def usage(unit: str, *items: tuple[str, float], used_at: str = at("10:00")) -> dict[str, Any]:
    return {
        "usage_id": uuid.uuid4().hex,
        "unit": unit,
        "organisation": "974760673",
        "municipality": "4601",
        "used_at": used_at,
        "items": [{"item": item, "quantity": quantity} for item, quantity in items],
    }


def exports_dir(platform: Platform) -> Path:
    return Path(platform.stack.run_dir) / "exports"


def files(platform: Platform, recipient: str, unit: str) -> dict[str, str]:
    folder = exports_dir(platform) / recipient
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.glob(f"*/{unit}/*"))}


def timesheet_lines(platform: Platform, unit: str) -> list[dict[str, str]]:
    lines: list[dict[str, str]] = []
    for text in files(platform, "payroll", unit).values():
        assert text.splitlines()[0] == (
            "employee_id;date;unit;cost_centre;hours;line_kind;visits;reference"
        )
        lines += list(csv.DictReader(io.StringIO(text), delimiter=";"))
    return lines


def hours(lines: list[dict[str, str]]) -> dict[tuple[str, str], float]:
    total: dict[tuple[str, str], float] = defaultdict(float)
    for line in lines:
        total[(line["employee_id"], line["line_kind"])] += float(line["hours"])
    return {key: round(value, 2) for key, value in total.items()}


def settled(platform: Platform, unit: str, entries: int, collection: str) -> bool:
    db = platform.db("integrations")[collection]
    return bool(
        db.count_documents({"unit": unit}) >= entries
        and db.count_documents({"unit": unit, "state": "pending"}) == 0
    )


def operator(platform: Platform) -> dict[str, str]:
    token = platform.token("integrations", subject="operator", kind="system", scope=SCOPE)
    return {"authorization": f"Bearer {token}"}


def reconciliation(http: httpx.Client, platform: Platform, unit: str) -> dict[str, Any]:
    answer = http.get(
        f"{platform.url('integrations')}/reconciliation",
        params={"date": DAY, "unit": unit},
        headers=operator(platform),
    )
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["rows"]
    assert len(rows) == 1, rows
    return rows[0]


# -- payroll ---------------------------------------------------------------------------------


PAYROLL_UNIT = new_unit()
# employee 1000001: 1.5 h + 0.75 h; employee 1000002: 2 h + 0.75 h (a visit from 00:30 Oslo
# time, i.e. 23:30 UTC the day before, counts on the Norwegian calendar day)
PAYROLL_VISITS = [
    visit(f"enc-p1-{PAYROLL_UNIT}", "1000001", PAYROLL_UNIT, at("07:00"), at("08:30")),
    visit(f"enc-p2-{PAYROLL_UNIT}", "1000001", PAYROLL_UNIT, at("09:00"), at("09:45")),
    visit(f"enc-p3-{PAYROLL_UNIT}", "1000002", PAYROLL_UNIT, at("08:00"), at("10:00")),
    visit(
        f"enc-p4-{PAYROLL_UNIT}",
        "1000002",
        PAYROLL_UNIT,
        at("23:30", "2026-11-19"),
        at("00:15"),
    ),
]


def test_completed_visits_become_timesheet_lines_with_hand_computed_hours(
    platform: Platform, http: httpx.Client
) -> None:
    for data in PAYROLL_VISITS:
        publish(http, platform, VISITS, data)
    eventually(lambda: settled(platform, PAYROLL_UNIT, 4, "timesheet_entries"), timeout=40)
    lines = timesheet_lines(platform, PAYROLL_UNIT)
    assert hours(lines) == {("1000001", "normal"): 2.25, ("1000002", "normal"): 2.75}
    assert {line["date"] for line in lines} == {DAY}
    # no cost centre configured for the unit: the unit is its own cost centre
    assert {(line["unit"], line["cost_centre"]) for line in lines} == {(PAYROLL_UNIT, PAYROLL_UNIT)}
    assert sum(int(line["visits"]) for line in lines) == 4
    # only the entitled columns, nothing about the patient or the visit's content
    assert all(set(line) == {
        "employee_id", "date", "unit", "cost_centre", "hours", "line_kind", "visits", "reference"
    } for line in lines)  # fmt: skip
    row = reconciliation(http, platform, PAYROLL_UNIT)
    assert row["visits_received"] == 4 and row["visits_applied"] == 4
    assert row["timesheet_entries"] == {"pending": 0, "exported": 4, "refused": 0}
    assert row["hours_exported"] == 5.0
    assert row["timesheet_lines_exported"] == len(lines)
    stream = platform.stream("integrations.export.exported")
    assert PAYROLL_UNIT in stream


SEEDED_DAY = "2026-11-21"


def test_visits_of_the_seeded_home_care_staff_sum_to_hand_computed_hours(
    platform: Platform, http: httpx.Client
) -> None:
    """The seeded population's home-care units and their active staff (masterdata.seed): the
    n-th practitioner of a unit (by HPR number) makes n % 3 + 1 visits of 45 minutes. A unit
    with 14 active staff makes 4 x (1 + 2 + 3) + 1 + 2 = 27 visits = 20.25 h; one with 13
    makes 25 visits = 18.75 h (one practitioner of the first unit is suspended by the seed)."""
    population = generate(persons=0)
    units = sorted(
        o["org_number"] for o in population.organisations if o.get("service_type") == "home_care"
    )
    staff = {
        unit: sorted(
            p["hpr_number"]
            for p in population.practitioners
            if p["status"] == "active" and any(e["unit"] == unit for e in p["employments"])
        )
        for unit in units
    }
    expected: dict[str, dict[str, float]] = {unit: {} for unit in units}
    for unit, practitioners in staff.items():
        for n, hpr in enumerate(practitioners):
            for k in range(n % 3 + 1):
                start, end = at(f"{7 + k:02d}:00", SEEDED_DAY), at(f"{7 + k:02d}:45", SEEDED_DAY)
                publish(http, platform, VISITS, visit(f"enc-s-{hpr}-{k}", hpr, unit, start, end))
            expected[unit][hpr] = 0.75 * (n % 3 + 1)
    visits = {unit: sum(round(h / 0.75) for h in expected[unit].values()) for unit in units}
    assert visits == dict(zip(units, (25, 27, 27, 27), strict=True))
    for unit in units:
        eventually(partial(settled, platform, unit, visits[unit], "timesheet_entries"), 90)
        lines = timesheet_lines(platform, unit)
        assert {e: h for (e, kind), h in hours(lines).items() if kind == "normal"} == expected[unit]
        assert {line["date"] for line in lines} == {SEEDED_DAY}
        # the runner maps the first seeded home-care unit to a cost centre; others are their own
        centre = "KST-4601-HJEM" if unit == "100000105" else unit
        assert {line["cost_centre"] for line in lines} == {centre}
        answer = http.get(
            f"{platform.url('integrations')}/reconciliation",
            params={"date": SEEDED_DAY, "unit": unit},
            headers=operator(platform),
        )
        (row,) = answer.json()["rows"]
        assert row["visits_received"] == visits[unit]
        assert row["timesheet_entries"]["exported"] == visits[unit]
    total = {unit: round(sum(expected[unit].values()), 2) for unit in units}
    assert list(total.values()) == [18.75, 20.25, 20.25, 20.25]


def test_a_corrected_visit_produces_offsetting_lines_never_an_overwrite(
    platform: Platform, http: httpx.Client
) -> None:
    unit = new_unit()
    first = visit(f"enc-c-{unit}", "1000003", unit, at("07:00"), at("08:30"))
    publish(http, platform, VISITS, first)
    eventually(lambda: settled(platform, unit, 1, "timesheet_entries"), timeout=40)
    assert hours(timesheet_lines(platform, unit)) == {("1000003", "normal"): 1.5}
    # the visit is corrected: it lasted two hours
    publish(http, platform, VISITS, {**first, "version": 2, "end": at("09:00")})
    eventually(lambda: settled(platform, unit, 3, "timesheet_entries"), timeout=40)
    assert hours(timesheet_lines(platform, unit)) == {
        ("1000003", "normal"): 1.5,
        ("1000003", "reversal"): -1.5,
        ("1000003", "correction"): 2.0,
    }
    # a late copy of version 1 changes nothing; entered-in-error reverses version 2
    publish(http, platform, VISITS, first)
    publish(http, platform, VISITS, {**first, "version": 3, "status": "entered-in-error"})
    eventually(lambda: settled(platform, unit, 4, "timesheet_entries"), timeout=40)
    totals = hours(timesheet_lines(platform, unit))
    assert totals == {
        ("1000003", "normal"): 1.5,
        ("1000003", "reversal"): -3.5,
        ("1000003", "correction"): 2.0,
    }
    assert round(sum(totals.values()), 2) == 0.0
    row = reconciliation(http, platform, unit)
    assert row["visits_received"] == 3  # versions 1, 2, 3: the late copy is no new event
    assert row["hours_exported"] == 0.0


# -- logistics -------------------------------------------------------------------------------


SUPPLY_UNIT = new_unit()


def orders(platform: Platform, unit: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for text in files(platform, "logistics", unit).values():
        document = json.loads(text)
        assert document["format"] == "akson.replenishment-order.v1"
        assert document["unit"] == unit
        found += document["orders"]
    return found


def test_supply_use_above_the_threshold_produces_orders(
    platform: Platform, http: httpx.Client
) -> None:
    # default threshold 10: 4 + 4 stays below, the third use (3) reaches 11; the runner
    # configures 30 for compress-sterile: 20 stays below, 20 + 15 = 35 orders
    publish(
        http,
        platform,
        SUPPLIES,
        usage(SUPPLY_UNIT, ("bandage-10cm", 4), ("gloves-m", 25), ("compress-sterile", 20)),
    )
    publish(http, platform, SUPPLIES, usage(SUPPLY_UNIT, ("bandage-10cm", 4)))
    eventually(lambda: settled(platform, SUPPLY_UNIT, 1, "orders"), timeout=40)
    assert [(o["item"], o["quantity"]) for o in orders(platform, SUPPLY_UNIT)] == [("gloves-m", 25)]
    publish(
        http,
        platform,
        SUPPLIES,
        usage(SUPPLY_UNIT, ("bandage-10cm", 3), ("compress-sterile", 15)),
    )
    eventually(lambda: settled(platform, SUPPLY_UNIT, 3, "orders"), timeout=40)
    placed = sorted((o["item"], o["quantity"], o["date"]) for o in orders(platform, SUPPLY_UNIT))
    assert placed == [
        ("bandage-10cm", 11, DAY),
        ("compress-sterile", 35, DAY),
        ("gloves-m", 25, DAY),
    ]
    row = reconciliation(http, platform, SUPPLY_UNIT)
    assert row["supply_usages_received"] == 3
    assert row["orders"] == {"pending": 0, "exported": 3, "refused": 0}
    assert row["quantity_ordered"] == 71


# -- minimisation ----------------------------------------------------------------------------


def dead_letters(http: httpx.Client, platform: Platform) -> list[dict[str, Any]]:
    answer = http.get(
        f"{platform.url('integrations')}/dead-letters",
        params={"limit": 200},
        headers=operator(platform),
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_a_patient_identifier_in_an_item_code_is_refused_dead_lettered_and_alerted(
    platform: Platform, http: httpx.Client
) -> None:
    unit = new_unit()
    # an item code typed with the patient's national id in it: a real path into an order file
    item = f"dressing-{PATIENT}"
    publish(http, platform, SUPPLIES, usage(unit, (item, 12)))
    eventually(
        lambda: platform.db("integrations").orders.find_one({"unit": unit, "state": "refused"})
    )
    refused = [d for d in dead_letters(http, platform) if d["unit"] == unit]
    assert len(refused) == 1
    letter = refused[0]
    assert letter["recipient"] == "logistics"
    assert "national_id_in_value" in letter["reasons"] and "payload_refused" in letter["reasons"]
    assert {"path": "payload/records/0/item", "code": "national_id_in_value"} in letter[
        "violations"
    ]
    assert letter["payload"]["records"][0]["item"] == "[withheld]"
    assert PATIENT not in json.dumps(letter)
    # never sent: no file for the unit, and the national id in no exported file at all
    assert files(platform, "logistics", unit) == {}
    assert not any(PATIENT in p.read_text() for p in exports_dir(platform).rglob("*.*"))
    alert = eventually(
        lambda: letter["id"] in (s := platform.stream("integrations.export.refused")) and s
    )
    assert "national_id_in_value" in alert and PATIENT not in alert
    row = reconciliation(http, platform, unit)
    assert row["orders"] == {"pending": 0, "exported": 0, "refused": 1}
    assert row["refused_files"] == 1


def test_a_national_id_as_a_unit_is_refused_for_payroll(
    platform: Platform, http: httpx.Client
) -> None:
    # a unit field filled with the patient's national id by mistake
    data = visit(f"enc-x-{uuid.uuid4().hex}", "1000004", PATIENT, at("07:00"), at("08:00"))
    publish(http, platform, VISITS, data)
    eventually(
        lambda: platform.db("integrations").timesheet_entries.find_one(
            {"encounter_id": data["encounter_id"], "state": "refused"}
        )
    )
    letter = next(
        d
        for d in dead_letters(http, platform)
        if d["recipient"] == "payroll" and d["unit"] == "[withheld]"
    )
    assert "national_id_in_value" in letter["reasons"]
    assert PATIENT not in json.dumps(letter)
    assert not any(PATIENT in str(p) for p in exports_dir(platform).rglob("*"))


def test_an_event_with_a_patient_field_is_refused_at_the_door(
    platform: Platform, http: httpx.Client
) -> None:
    unit = new_unit()
    data = visit(f"enc-f-{unit}", "1000005", unit, at("07:00"), at("08:00"))
    envelope = publish(http, platform, VISITS, {**data, "patient": PATIENT})
    published.pop()  # not part of the replay: it was never applied
    # the contract forbids extra fields: dropped to the dead-letter topic, nothing recorded
    eventually(lambda: envelope["id"] in platform.stream(f"{VISITS}.deadletter"))
    assert platform.db("integrations").visits.find_one({"_id": data["encounter_id"]}) is None


def test_without_the_policy_engine_nothing_is_sent_until_it_answers(
    platform: Platform, http: httpx.Client
) -> None:
    unit = new_unit()
    db = platform.db("integrations")
    platform.stack.stop("opa")
    try:
        publish(http, platform, SUPPLIES, usage(unit, ("swab-5x5", 15)))
        eventually(lambda: db.orders.find_one({"unit": unit}))
        time.sleep(5)  # a few export sweeps without a decision
        assert db.orders.find_one({"unit": unit})["state"] == "pending"
        assert files(platform, "logistics", unit) == {}
    finally:
        platform.stack.start("opa")
    eventually(lambda: settled(platform, unit, 1, "orders"), timeout=40)
    assert [(o["item"], o["quantity"]) for o in orders(platform, unit)] == [("swab-5x5", 15)]


# -- replay ----------------------------------------------------------------------------------


def snapshot(platform: Platform) -> dict[str, str]:
    return {
        str(p.relative_to(exports_dir(platform))): p.read_text()
        for p in sorted(exports_dir(platform).rglob("*"))
        if p.is_file()
    }


def test_replaying_every_event_changes_nothing(platform: Platform, http: httpx.Client) -> None:
    assert published
    db = platform.db("integrations")
    before_files = snapshot(platform)
    before = {unit: reconciliation(http, platform, unit) for unit in (PAYROLL_UNIT, SUPPLY_UNIT)}
    counts = {c: db[c].count_documents({}) for c in ("timesheet_entries", "orders", "exports")}
    replayed = list(published)
    marker: list[str] = []
    for item in replayed:
        # the same event again (same id), and a copy re-published with a new id
        publish(http, platform, item["topic"], item["envelope"]["data"], item["envelope"]["id"])
        copy = publish(http, platform, item["topic"], item["envelope"]["data"])
        marker.append(f"{item['topic']}:{copy['id']}")
    eventually(
        lambda: all(db.processed_events.find_one({"_id": key}) for key in marker), timeout=60
    )
    assert {c: db[c].count_documents({}) for c in counts} == counts
    assert snapshot(platform) == before_files
    assert {unit: reconciliation(http, platform, unit) for unit in before} == before


def test_the_operator_views_need_the_scope(platform: Platform, http: httpx.Client) -> None:
    token = platform.token("integrations", subject="other", kind="system", scope="Patient.read")
    answer = http.get(
        f"{platform.url('integrations')}/dead-letters",
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 403
    assert "missing_scope" in answer.json()["reasons"]
    assert http.get(f"{platform.url('integrations')}/dead-letters").status_code == 401
