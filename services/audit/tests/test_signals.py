"""The snooping rules: each fires on what it should, stays quiet otherwise, and explains."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from audit.signals import (
    Access,
    access_of,
    protected_address,
    repeated_emergency,
    unusual_volume,
)

DAY = date(2026, 11, 22)


def reads(
    practitioner: str,
    day: date,
    patients: int,
    reasons: tuple[str, ...] = ("care_relation",),
    protected_address: bool = False,
) -> list[Access]:
    return [
        Access(
            practitioner=practitioner,
            patient=f"p{day.isoformat()}-{n}",
            day=day,
            reasons=reasons,
            protected_address=protected_address,
        )
        for n in range(patients)
    ]


def steady(practitioner: str, per_day: list[int]) -> list[Access]:
    return [
        a
        for n, count in enumerate(per_day, start=1)
        for a in reads(practitioner, DAY - timedelta(days=n), count)
    ]


def test_a_day_far_above_the_practitioners_own_baseline_is_flagged_with_its_numbers() -> None:
    history = steady("9144900", [5, 6, 4, 5, 6, 5, 4])
    accesses = [*history, *reads("9144900", DAY, 40)]
    [signal] = unusual_volume(accesses, DAY, baseline_days=7)
    assert signal.rule == "unusual_volume" and signal.count == 40
    assert signal.numbers["baseline_mean"] == 5.0
    assert 0 < signal.numbers["baseline_sigma"] < 1
    assert "40 distinct patients on 2026-11-22" in signal.explanation
    assert "mean 5.0" in signal.explanation and "3σ" in signal.explanation


def test_a_busy_day_within_the_own_baseline_or_below_the_minimum_is_not_flagged() -> None:
    busy = steady("9144901", [30, 10, 35, 12, 28, 40, 15])
    assert unusual_volume([*busy, *reads("9144901", DAY, 38)], DAY, baseline_days=7) == []
    quiet = steady("9144902", [0, 0, 1, 0, 0, 0, 0])
    # far above a tiny baseline, but below the minimum volume
    assert unusual_volume([*quiet, *reads("9144902", DAY, 9)], DAY, baseline_days=7) == []
    assert unusual_volume([*quiet, *reads("9144902", DAY, 10)], DAY, baseline_days=7)


def test_the_same_patient_read_many_times_is_one_patient() -> None:
    many = [reads("9144903", DAY, 1)[0]] * 50
    assert unusual_volume(many, DAY, baseline_days=7, min_volume=2) == []


def test_every_access_to_a_protected_address_is_flagged_per_practitioner_and_patient() -> None:
    hidden = reads("9144904", DAY, 1, protected_address=True) * 3
    other = reads("9144905", DAY, 2)
    [signal] = protected_address([*hidden, *other])
    assert (signal.practitioner, signal.patient, signal.count) == ("9144904", hidden[0].patient, 3)
    assert "protected address" in signal.explanation


def test_repeated_access_only_by_emergency_is_flagged_not_emergency_with_a_basis() -> None:
    only = reads("9144906", DAY, 3, reasons=("emergency",))
    with_basis = reads("9144907", DAY, 5, reasons=("care_relation", "emergency"))
    twice = reads("9144908", DAY, 2, reasons=("emergency", "directive_overridden"))
    [signal] = repeated_emergency([*only, *with_basis, *twice], min_emergency=3)
    assert signal.practitioner == "9144906" and signal.count == 3
    assert signal.numbers["patients"] == 3 and "only by emergency" in signal.explanation
    assert repeated_emergency(twice, min_emergency=2)[0].practitioner == "9144908"


def test_only_allowed_accesses_of_practitioners_to_records_count() -> None:
    base = {
        "patient": "17858000076",
        "at": datetime(2026, 11, 22, 23, 30, tzinfo=UTC),
        "allow": True,
        "actor_kind": "practitioner",
        "resource_type": "DocumentReference",
        "hpr": "9144900",
        "actor": "hpr:9144900",
        "reasons": ["care_relation"],
        "protected_address": True,
    }
    access = access_of(base)
    assert access is not None and access.day == DAY and access.protected_address
    assert access_of({**base, "allow": False}) is None
    assert access_of({**base, "actor_kind": "citizen"}) is None
    assert access_of({**base, "resource_type": "DecisionLog"}) is None
    assert access_of({**base, "patient": None}) is None
