"""Snooping signals: accesses worth a human look, each with the rule and numbers behind it.

Three rules over the allowed accesses of practitioners to patients' records (the decision log's
query fields; audit's own queries excluded):

- ``unusual_volume``: a practitioner's distinct patients on the day examined against their own
  baseline, the distinct patients per day over the previous ``baseline_days`` days (days without
  access count as 0): flagged when the day's number is at least ``min_volume`` and above
  mean + k·σ of the baseline;
- ``protected_address``: any access to a person with a protected address (``fortrolig`` /
  ``strengt fortrolig``: the decision records ``context.patient.protected_address``, which the
  log mask keeps), per practitioner and patient, over the whole window;
- ``repeated_emergency``: a practitioner whose accesses were allowed *only* by emergency (no
  other basis such as a care relation or consent) at least ``min_emergency`` times in the
  window.

The rules are pure functions (unit-tested); ``GET /audit/signals`` reads the window's allowed
decisions (projection of the query fields only) and applies them. A flag is a reason to review,
not a finding.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from audit.models import Signal, SignalPage, SignalQuery
from audit.store import DecisionStore

AUDIT_TYPES = ("AuditEvent", "DecisionLog", "AccessLog", "AccessReview")
# the reasons that are a basis of their own (authz policy's grants): with any of them an
# emergency access was not "only by emergency"
OTHER_BASES = frozenset(
    {"care_relation", "directory", "own_record", "system_scope", "sharing_consent", "auditor"}
)


@dataclass(frozen=True)
class Access:
    """One allowed access, as the rules see it."""

    practitioner: str  # HPR number, else the subject id
    patient: str
    day: date
    reasons: tuple[str, ...]
    protected_address: bool


def unusual_volume(
    accesses: Iterable[Access],
    day: date,
    baseline_days: int,
    k: float = 3.0,
    min_volume: int = 10,
) -> list[Signal]:
    patients: dict[str, dict[date, set[str]]] = defaultdict(lambda: defaultdict(set))
    for access in accesses:
        patients[access.practitioner][access.day].add(access.patient)
    baseline = [day - timedelta(days=n) for n in range(1, baseline_days + 1)]
    signals = []
    for practitioner, by_day in sorted(patients.items()):
        today = len(by_day.get(day, ()))
        if today < min_volume:
            continue
        counts = [len(by_day.get(d, ())) for d in baseline]
        mean = sum(counts) / len(counts) if counts else 0.0
        sigma = math.sqrt(sum((c - mean) ** 2 for c in counts) / len(counts)) if counts else 0.0
        threshold = mean + k * sigma
        if today > threshold:
            signals.append(
                Signal(
                    rule="unusual_volume",
                    practitioner=practitioner,
                    count=today,
                    explanation=(
                        f"{today} distinct patients on {day.isoformat()}; own baseline over the "
                        f"{len(counts)} previous days: mean {mean:.1f}, σ {sigma:.1f}; flagged "
                        f"above mean + {k:g}σ = {threshold:.1f} (and at least {min_volume})"
                    ),
                    numbers={
                        "patients": today,
                        "baseline_mean": round(mean, 2),
                        "baseline_sigma": round(sigma, 2),
                        "threshold": round(threshold, 2),
                        "k": k,
                        "min_volume": min_volume,
                        "baseline_days": len(counts),
                    },
                )
            )
    return signals


def protected_address(accesses: Iterable[Access]) -> list[Signal]:
    pairs: dict[tuple[str, str], int] = defaultdict(int)
    for access in accesses:
        if access.protected_address:
            pairs[(access.practitioner, access.patient)] += 1
    return [
        Signal(
            rule="protected_address",
            practitioner=practitioner,
            patient=patient,
            count=count,
            explanation=(
                f"{count} allowed access(es) to a person with a protected address in the window: "
                "their whereabouts are confidential, every access deserves a look"
            ),
            numbers={"accesses": count},
        )
        for (practitioner, patient), count in sorted(pairs.items())
    ]


def emergency_only(access: Access) -> bool:
    return "emergency" in access.reasons and not OTHER_BASES.intersection(access.reasons)


def repeated_emergency(accesses: Iterable[Access], min_emergency: int = 3) -> list[Signal]:
    uses: dict[str, list[Access]] = defaultdict(list)
    for access in accesses:
        if emergency_only(access):
            uses[access.practitioner].append(access)
    signals = []
    for practitioner, found in sorted(uses.items()):
        if len(found) < min_emergency:
            continue
        patients = len({a.patient for a in found})
        days = len({a.day for a in found})
        signals.append(
            Signal(
                rule="repeated_emergency",
                practitioner=practitioner,
                count=len(found),
                explanation=(
                    f"{len(found)} accesses allowed only by emergency (no care relation or "
                    f"consent) to {patients} patient(s) on {days} day(s) in the window; flagged "
                    f"at {min_emergency} or more"
                ),
                numbers={
                    "emergency_only": len(found),
                    "patients": patients,
                    "days": days,
                    "min_emergency": min_emergency,
                },
            )
        )
    return signals


def access_of(document: dict[str, Any]) -> Access | None:
    """The rules' view of a stored decision (query fields), or None when it is no access of a
    practitioner to a patient's record."""
    patient, at = document.get("patient"), document.get("at")
    if not patient or not isinstance(at, datetime) or document.get("allow") is not True:
        return None
    if document.get("actor_kind") != "practitioner":
        return None
    if document.get("resource_type") in AUDIT_TYPES:
        return None
    who = document.get("hpr") or document.get("actor")
    if not who:
        return None
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return Access(
        practitioner=str(who),
        patient=str(patient),
        day=at.astimezone(UTC).date(),
        reasons=tuple(document.get("reasons") or ()),
        protected_address=bool(document.get("protected_address")),
    )


# -- the auditors' view ------------------------------------------------------------------------


async def examine(store: DecisionStore, query: SignalQuery) -> SignalPage:
    """Flags for review over ``query.day`` (default today, UTC) and the ``baseline_days``
    before it; each says which rule fired and the numbers behind it."""
    examined = query.day or datetime.now(UTC).date()
    start = examined - timedelta(days=query.baseline_days)
    since = datetime.combine(start, time(), UTC)
    until = datetime.combine(examined + timedelta(days=1), time(), UTC)
    accesses = []
    async for document in store.practitioner_accesses(since, until):
        access = access_of(document)
        if access is not None:
            accesses.append(access)
    items = [
        *unusual_volume(accesses, examined, query.baseline_days, query.k, query.min_volume),
        *protected_address(accesses),
        *repeated_emergency(accesses, query.min_emergency),
    ]
    return SignalPage(day=examined, window_start=start, items=items)
