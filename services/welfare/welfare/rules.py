"""The rules that act on a device's accepted entries, per patient: pure functions.

- ``missed_dose``: a MedicationAdministration ``not-done`` (the dispenser's dose was not taken);
- ``alarm``: an active Flag (safety alarm, fall, door, bed);
- ``out_of_range``: an Observation whose value (or a component's: blood pressure's systolic and
  diastolic) is below ``low`` or above ``high`` of the patient's threshold for its code.

A finding carries the rule and the numbers it compared, never text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from akson_common.events import WelfareRule
from welfare.bundles import Entry
from welfare.models import Threshold

Json = dict[str, Any]


@dataclass(frozen=True)
class Finding:
    rule: WelfareRule
    entry: int
    code: str | None = None
    code_system: str | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    value_unit: str | None = None
    occurred_at: str | None = None


def first_coding(concept: Any) -> tuple[str | None, str | None]:
    """The first coding's (code, system) of a CodeableConcept."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            system = coding.get("system")
            return coding["code"], system if isinstance(system, str) else None
    return None, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _measured(observation: Json) -> Iterable[tuple[Json, Json]]:
    """(code, valueQuantity) of the observation and each of its components."""
    for part in (observation, *(observation.get("component") or [])):
        if isinstance(part, dict) and isinstance(part.get("valueQuantity"), dict):
            yield part.get("code") or {}, part["valueQuantity"]


def _matches(threshold: Threshold, concept: Json) -> bool:
    return any(
        isinstance(coding, dict)
        and coding.get("code") == threshold.code
        and coding.get("system") in (threshold.system, None)
        for coding in concept.get("coding") or []
    )


def _when(resource: Json) -> str | None:
    for key in ("effectiveDateTime", "issued"):
        if isinstance(resource.get(key), str):
            return str(resource[key])
    for key in ("effectivePeriod", "period"):
        period = resource.get(key)
        if isinstance(period, dict) and isinstance(period.get("start"), str):
            return str(period["start"])
    return None


def _out_of_range(entry: Entry, thresholds: Sequence[Threshold]) -> list[Finding]:
    findings = []
    for concept, quantity in _measured(entry.resource):
        value = _number(quantity.get("value"))
        if value is None:
            continue
        for threshold in thresholds:
            if not _matches(threshold, concept):
                continue
            below = threshold.low is not None and value < threshold.low
            above = threshold.high is not None and value > threshold.high
            if below or above:
                unit = quantity.get("code") or quantity.get("unit")
                findings.append(
                    Finding(
                        rule="out_of_range",
                        entry=entry.index,
                        code=threshold.code,
                        code_system=threshold.system,
                        value=value,
                        low=threshold.low,
                        high=threshold.high,
                        value_unit=str(unit) if unit is not None else None,
                        occurred_at=_when(entry.resource),
                    )
                )
    return findings


def evaluate(entries: Sequence[Entry], thresholds: Sequence[Threshold]) -> list[Finding]:
    """What the patient's rules find in a message's entries, in entry order."""
    findings: list[Finding] = []
    for entry in entries:
        resource = entry.resource
        if entry.resource_type == "MedicationAdministration":
            if resource.get("status") == "not-done":
                code, system = first_coding(resource.get("medicationCodeableConcept"))
                findings.append(
                    Finding("missed_dose", entry.index, code, system, occurred_at=_when(resource))
                )
        elif entry.resource_type == "Flag":
            if resource.get("status") == "active":
                code, system = first_coding(resource.get("code"))
                findings.append(
                    Finding("alarm", entry.index, code, system, occurred_at=_when(resource))
                )
        elif entry.resource_type == "Observation":
            findings.extend(_out_of_range(entry, thresholds))
    return findings
