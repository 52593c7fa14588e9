"""What the audit store keeps of an OPA decision-log entry, and the query fields it yields.

Kept (an allow-list, so nothing new slips in when the policy input grows): the decision id,
time, policy path, OPA's labels, the fields OPA erased; the subject's identifiers, profession,
organisation, unit, municipality and roles; the action; the resource's identifiers, type,
category, sensitivity and where it was recorded; the basis the decision had (care relations
and directives by id and kind, the patient's protected-address / deceased flags, purpose,
emergency reason code); and the result (allow, reasons, obligations, policy version).

Dropped: everything else — any free text, document content, directive categories or periods,
scopes and roles beyond the listed fields, OPA's metrics, the caller's address
(``requested_by``) and any field not named here. Tokens never reach the policy input.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SUBJECT_FIELDS = (
    "id",
    "kind",
    "hpr_number",
    "profession",
    "organisation",
    "unit",
    "municipality",
    "roles",
    # SMART apps: which app made the access, for which launch patient
    "app",
    "launch_patient",
)
RESOURCE_FIELDS = (
    "type",
    "id",
    "patient",
    "category",
    "sensitivity",
    "unit",
    "organisation",
    "municipality",
    "author",
    "withheld_from_patient",
)
RELATION_FIELDS = ("relation_id", "kind", "practitioner", "unit", "active")
DIRECTIVE_FIELDS = ("directive_id", "version", "kind", "status", "active")
PATIENT_FIELDS = ("protected_address", "deceased")
RESULT_FIELDS = ("allow", "reasons", "obligations", "policy_version")
ENTRY_FIELDS = ("decision_id", "timestamp", "path", "labels", "erased")

# The query fields extracted at intake (all top-level, most indexed).
QUERY_FIELDS = (
    "at",
    "patient",
    "actor",
    "actor_kind",
    "hpr",
    "profession",
    "organisation",
    "unit",
    "municipality",
    "app",
    "action",
    "resource_type",
    "resource_id",
    "category",
    "allow",
    "reasons",
    "obligations",
    "emergency",
    "emergency_reason",
    "purpose",
    "protected_address",
)


def _pick(source: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(source, dict):
        return {}
    return {name: _plain(source[name]) for name in names if name in source}


def _plain(value: Any) -> Any:
    """JSON scalars and lists of them; nested objects are not expected here and are dropped."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value if v is None or isinstance(v, bool | int | float | str)]
    return None


def _picked_list(source: Any, names: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(source, list):
        return []
    return [_pick(item, names) for item in source if isinstance(item, dict)]


def sanitise(entry: dict[str, Any]) -> dict[str, Any]:
    """The part of an OPA decision-log entry the store keeps (see the module docstring)."""
    record: dict[str, Any] = {}
    for name in ENTRY_FIELDS:
        if name not in entry:
            continue
        value = entry[name]
        if name == "labels":
            value = {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
        else:
            value = _plain(value)
        record[name] = value
    policy_input = entry.get("input")
    if isinstance(policy_input, dict):
        context = policy_input.get("context")
        context = context if isinstance(context, dict) else {}
        kept_context: dict[str, Any] = {
            "care_relations": _picked_list(context.get("care_relations"), RELATION_FIELDS),
            "directives": _picked_list(context.get("directives"), DIRECTIVE_FIELDS),
            "purpose": _plain(context.get("purpose")),
            "emergency_reason": _plain(context.get("emergency_reason")),
        }
        if isinstance(context.get("patient"), dict):
            kept_context["patient"] = _pick(context["patient"], PATIENT_FIELDS)
        record["input"] = {
            "subject": _pick(policy_input.get("subject"), SUBJECT_FIELDS),
            "action": _plain(policy_input.get("action")),
            "resource": _pick(policy_input.get("resource"), RESOURCE_FIELDS),
            "context": kept_context,
        }
    result = entry.get("result")
    if isinstance(result, dict):
        record["result"] = _pick(result, RESULT_FIELDS)
    elif isinstance(result, bool):
        record["result"] = {"allow": result}
    return record


def parse_time(value: Any) -> datetime | None:
    """OPA's RFC 3339 timestamps carry nanoseconds; Python and BSON keep microseconds."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # BSON dates have millisecond precision: store what reads back unchanged
    return parsed.astimezone(UTC).replace(microsecond=parsed.microsecond // 1000 * 1000)


def query_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The flat fields auditors filter on, derived from the kept record only."""
    policy_input = record.get("input") or {}
    subject = policy_input.get("subject") or {}
    resource = policy_input.get("resource") or {}
    context = policy_input.get("context") or {}
    result = record.get("result") or {}
    reasons = [r for r in result.get("reasons") or [] if isinstance(r, str)]
    emergency_reason = context.get("emergency_reason") or None
    return {
        "at": parse_time(record.get("timestamp")),
        "patient": resource.get("patient"),
        "actor": subject.get("id"),
        "actor_kind": subject.get("kind"),
        "hpr": subject.get("hpr_number"),
        "profession": subject.get("profession"),
        "organisation": subject.get("organisation"),
        "unit": subject.get("unit"),
        "municipality": subject.get("municipality"),
        "app": subject.get("app"),
        "action": policy_input.get("action"),
        "resource_type": resource.get("type"),
        "resource_id": resource.get("id"),
        "category": resource.get("category"),
        "allow": result.get("allow") is True,
        "reasons": reasons,
        "obligations": [o for o in result.get("obligations") or [] if isinstance(o, str)],
        "emergency": emergency_reason is not None or "emergency" in reasons,
        "emergency_reason": emergency_reason,
        "purpose": context.get("purpose"),
        "protected_address": bool((context.get("patient") or {}).get("protected_address")),
    }
