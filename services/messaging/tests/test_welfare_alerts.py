"""A welfare alert as the care message's text (messaging.service.welfare_alert_text)."""

from __future__ import annotations

from datetime import UTC, datetime

from akson_common.events import WelfareAlertRaisedV1
from messaging.service import welfare_alert_text


def alert(**fields: object) -> WelfareAlertRaisedV1:
    return WelfareAlertRaisedV1.model_validate(
        {
            "alert_id": "a-1",
            "patient": "01017012345",
            "device": "oximeter-7",
            "unit": "999000061",
            "rule": "out_of_range",
            "message_id": "m-1",
            **fields,
        }
    )


def test_a_measurement_out_of_range_names_the_rule_the_code_and_the_numbers() -> None:
    text = welfare_alert_text(
        alert(
            code="59408-5",
            code_system="http://loinc.org",
            value=86.0,
            low=90.0,
            value_unit="%",
            occurred_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        )
    )
    assert text == (
        "Welfare technology: measurement out of range; code http://loinc.org|59408-5; "
        "value 86 % (low 90); device oximeter-7; at 2026-12-01T08:00:00+00:00."
    )


def test_a_missed_dose_has_no_numbers_and_no_patient() -> None:
    text = welfare_alert_text(alert(rule="missed_dose", code="N02BE01"))
    assert text == "Welfare technology: missed dose; code N02BE01; device oximeter-7."
    assert "01017012345" not in text
