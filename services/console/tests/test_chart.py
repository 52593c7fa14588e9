"""The per-day chart: each decision counted once, as allowed, refused or emergency."""

from __future__ import annotations

from console.chart import draw, outcome, per_day


def decision(
    at: str, allow: bool, reasons: list[str], reason: str | None = None
) -> dict[str, object]:
    return {"at": at, "allow": allow, "reasons": reasons, "emergency_reason": reason}


def test_decisions_are_counted_per_day_by_outcome() -> None:
    days = per_day(
        [
            decision("2026-12-02T08:00:00Z", True, ["care_relation"]),
            decision("2026-12-01T09:00:00Z", True, ["emergency"], "unconscious_patient"),
            decision("2026-12-01T10:00:00Z", False, ["no_legal_basis"]),
            decision("2026-12-01T11:00:00Z", True, ["care_relation"]),
            {"allow": True},  # no time: not on the chart
        ]
    )
    assert [(d.day, d.allowed, d.refused, d.emergency) for d in days] == [
        ("2026-12-01", 1, 1, 1),
        ("2026-12-02", 1, 0, 0),
    ]


def test_an_emergency_is_an_allowed_break_glass_and_a_refusal_is_never_one() -> None:
    assert outcome(decision("x", True, ["emergency"])) == "emergency"
    assert outcome(decision("x", True, [], "unconscious_patient")) == "emergency"
    assert outcome(decision("x", False, ["emergency"], "unconscious_patient")) == "refused"


def test_the_busiest_bar_fills_the_plot_and_an_empty_one_has_no_height() -> None:
    days = per_day([decision("2026-12-01T00:00:00Z", True, []) for _ in range(4)])
    chart = draw(days, width=300, height=130)
    allowed, refused, emergency = chart.bars
    assert chart.peak == 4 and allowed.height == 90.0 and allowed.y == 10.0
    assert refused.height == emergency.height == 0.0
    assert draw([]).bars == []
