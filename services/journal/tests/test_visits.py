"""The visit-completed event: only what payroll needs, never the patient."""

from __future__ import annotations

from typing import Any

import pytest

from akson_common.errors import Unprocessable
from journal.service import visit_completed

PATIENT = "13018012345"


def encounter(status: str, **extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": status,
        "class": {"code": "HH"},
        "type": [{"coding": [{"code": "home_nursing"}]}],
        "subject": {"reference": f"Patient/{PATIENT}"},
        "participant": [{"individual": {"reference": "Practitioner/9150001"}}],
        "serviceProvider": {"reference": "Organization/974760673"},
        "period": {"start": "2025-03-01T09:00:00+01:00", "end": "2025-03-01T09:40:00+01:00"},
        "reasonCode": [{"text": "Sårstell etter operasjon"}],
        **extra,
    }
    return {
        "_id": "e1",
        "type": "Encounter",
        "patient": PATIENT,
        "status": status,
        "version": 2,
        "unit": "999999999",
        "organisation": "974760673",
        "municipality": "4601",
        "author": "9150002",
        "resource": resource,
    }


def test_a_finished_visit_reports_who_where_what_and_when_only() -> None:
    event = visit_completed(encounter("finished"), previous=None)
    assert event is not None
    payload = event.model_dump_json()
    assert PATIENT not in payload and "Sår" not in payload
    assert event.performer == "9150001" and event.unit == "974760673"
    assert event.visit_type == "home_nursing" and event.status == "finished"
    assert (event.end - event.start).total_seconds() == 40 * 60


def test_an_unfinished_visit_reports_nothing() -> None:
    assert visit_completed(encounter("in-progress"), previous=None) is None
    assert visit_completed(encounter("entered-in-error"), previous={"finished": False}) is None


def test_a_finished_visit_marked_in_error_is_reported_as_such() -> None:
    event = visit_completed(encounter("entered-in-error"), previous={"finished": True})
    assert event is not None and event.status == "entered-in-error"


def test_a_finished_visit_needs_its_period() -> None:
    with pytest.raises(Unprocessable):
        visit_completed(encounter("finished", period={"start": "2025-03-01"}), previous=None)
