"""FHIR messages from hubs and vendors, read in two steps, and the receipts that answer them.

1. :func:`read_message`: the envelope — a ``Bundle`` of type ``message`` whose first entry is
   the ``MessageHeader`` (its ``id`` is the message id), then clinical entries, each tied to
   one registered Device: an ``Observation`` (``device``), a ``MedicationAdministration``
   (``device``; ``not-done`` is a missed dose) or a ``Flag`` (``author``: an alarm). Every
   entry names the same device. Nothing here needs the registry.
2. :func:`validated_entries`: once the registry has said whose device it is, each entry gets
   the patient as ``subject`` (a hub may leave it out; one naming someone else is refused)
   and is validated with fhir.resources' R4B models (wire-compatible with R4 for these
   types); Observations are coded into the welfare category.

Errors name locations, never submitted values (they may be health data).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.messageheader import MessageHeader
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from akson_common.errors import Unprocessable

Json = dict[str, Any]
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MODELS: dict[str, type[Resource]] = {
    "Observation": Observation,
    "MedicationAdministration": MedicationAdministration,
    "Flag": Flag,
}
CATEGORY_SYSTEM = "urn:akson:category"
WELFARE_CATEGORY = {"coding": [{"system": CATEGORY_SYSTEM, "code": "welfare"}]}
# the codes a receipt's OperationOutcome gives for its verdict
RECEIPT_SYSTEM = "urn:akson:welfare-receipt"
# where a recorded entry's identifier says which message (and which entry of it) it came from
ENTRY_SYSTEM = "urn:akson:welfare-message-entry"
SOURCE_ENDPOINT = "urn:akson:welfare"

Verdict = Literal["accepted", "unknown-device", "device-not-assigned", "consent-withdrawn"]
ISSUE_CODES: dict[str, str] = {
    "accepted": "informational",
    "unknown-device": "not-found",
    "device-not-assigned": "business-rule",
    "consent-withdrawn": "forbidden",
}
VERDICT_TEXT: dict[str, str] = {
    "accepted": "accepted and recorded",
    "unknown-device": "the device is not registered (for this sender)",
    "device-not-assigned": "the device is not assigned to a patient",
    "consent-withdrawn": "the patient's consent for the device does not hold",
}


@dataclass(frozen=True)
class Entry:
    index: int  # the entry's position in the Bundle
    resource_type: str
    resource: Json


@dataclass(frozen=True)
class Message:
    id: str
    device: str
    header: Json
    entries: tuple[Entry, ...]


def invalid(detail: str, *where: str | int) -> Unprocessable:
    return Unprocessable(detail, errors=[{"loc": [str(w) for w in where], "msg": detail}])


def _device_reference(resource_type: str, resource: Json, index: int) -> str:
    where: tuple[str | int, ...]
    if resource_type == "Observation":
        reference, where = resource.get("device"), ("entry", index, "resource", "device")
    elif resource_type == "MedicationAdministration":
        devices = resource.get("device")
        reference = devices[0] if isinstance(devices, list) and len(devices) == 1 else None
        where = ("entry", index, "resource", "device")
    else:
        reference, where = resource.get("author"), ("entry", index, "resource", "author")
    text = reference.get("reference") if isinstance(reference, dict) else None
    device = text.removeprefix("Device/") if isinstance(text, str) else ""
    if not (isinstance(text, str) and text.startswith("Device/") and FHIR_ID.match(device)):
        raise invalid("each entry references exactly one Device/<id>", *where)
    return device


def read_message(body: Any, max_entries: int = 50) -> Message:
    """The message's id, device and entries, or a 422 saying where the envelope is wrong."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise invalid("a message is a Bundle", "resourceType")
    if body.get("type") != "message":
        raise invalid("the Bundle's type is message", "type")
    entries = body.get("entry")
    if not isinstance(entries, list) or len(entries) < 2:
        raise invalid("a message is a MessageHeader and at least one entry", "entry")
    if len(entries) > max_entries + 1:
        raise invalid(f"a message carries at most {max_entries} entries", "entry")
    resources = [e.get("resource") if isinstance(e, dict) else None for e in entries]
    header = resources[0]
    if not isinstance(header, dict) or header.get("resourceType") != "MessageHeader":
        raise invalid("the first entry is the MessageHeader", "entry", 0, "resource")
    message_id = header.get("id")
    if not isinstance(message_id, str) or not FHIR_ID.match(message_id):
        raise invalid("the MessageHeader has an id (the message id)", "entry", 0, "resource", "id")
    read: list[Entry] = []
    devices: set[str] = set()
    for index, resource in enumerate(resources[1:], start=1):
        name = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(resource, dict) or name not in MODELS:
            raise invalid(
                "entries are Observation, MedicationAdministration or Flag",
                "entry",
                index,
                "resource",
                "resourceType",
            )
        devices.add(_device_reference(str(name), resource, index))
        read.append(Entry(index, str(name), resource))
    if len(devices) != 1:
        raise invalid("every entry of a message references the same device", "entry")
    return Message(id=message_id, device=devices.pop(), header=header, entries=tuple(read))


def _validated(model: type[Resource], resource: Json, *where: str | int) -> Json:
    try:
        validated = model.model_validate(resource)
    except ValidationError as error:
        first = error.errors()[0]["loc"] if error.errors() else ()
        raise invalid(f"not a valid {model.__name__}", *where, *first) from None
    except (KeyError, TypeError, ValueError):
        raise invalid(f"not a readable {model.__name__}", *where) from None
    result: Json = validated.model_dump(mode="json", exclude_none=True)
    return result


def validated_entries(message: Message, patient: str) -> list[Entry]:
    """Each entry as it goes into the journal: the patient as subject, validated."""
    _validated(MessageHeader, message.header, "entry", 0, "resource")
    subject = {"reference": f"Patient/{patient}"}
    entries = []
    for entry in message.entries:
        where = ("entry", entry.index, "resource")
        named = entry.resource.get("subject")
        if named is not None and named != subject:
            raise invalid("the subject is not the device's patient", *where, "subject")
        resource = {key: value for key, value in entry.resource.items() if key != "id"}
        resource["subject"] = subject
        resource["identifier"] = [
            *(resource.get("identifier") or []),
            {"system": ENTRY_SYSTEM, "value": f"{message.id}.{entry.index}"},
        ]
        if entry.resource_type == "Observation":
            resource["category"] = [
                c for c in resource.get("category") or [] if c != WELFARE_CATEGORY
            ] + [WELFARE_CATEGORY]
        checked = _validated(MODELS[entry.resource_type], resource, *where)
        entries.append(Entry(entry.index, entry.resource_type, checked))
    return entries


def receipt(message: Message, verdict: Verdict, at: datetime | None = None) -> Json:
    """The response message: ``ok`` for an accepted message, ``fatal-error`` (do not resend
    as it is) with the reason coded in its OperationOutcome otherwise."""
    outcome_id = uuid.uuid4().hex
    accepted = verdict == "accepted"
    outcome = {
        "resourceType": "OperationOutcome",
        "id": outcome_id,
        "issue": [
            {
                "severity": "information" if accepted else "error",
                "code": ISSUE_CODES[verdict],
                "details": {
                    "coding": [{"system": RECEIPT_SYSTEM, "code": verdict}],
                    "text": VERDICT_TEXT[verdict],
                },
            }
        ],
    }
    header: Json = {
        "resourceType": "MessageHeader",
        "id": uuid.uuid4().hex,
        "source": {"endpoint": SOURCE_ENDPOINT},
        "response": {
            "identifier": message.id,
            "code": "ok" if accepted else "fatal-error",
            "details": {"reference": f"urn:uuid:{outcome_id}"},
        },
    }
    event: Json = {
        key: message.header[key] for key in ("eventCoding", "eventUri") if key in message.header
    }
    header.update(event or {"eventUri": "urn:akson:welfare:receipt"})
    source = message.header.get("source")
    if isinstance(source, dict) and isinstance(source.get("endpoint"), str):
        header["destination"] = [{"endpoint": source["endpoint"]}]
    bundle: Json = {
        "resourceType": "Bundle",
        "id": uuid.uuid4().hex,
        "type": "message",
        "timestamp": (at or datetime.now(UTC)).isoformat(),
        "entry": [
            {"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
            {"fullUrl": f"urn:uuid:{outcome_id}", "resource": outcome},
        ],
    }
    result: Json = Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
    return result


def verdict_of(receipt_bundle: Json) -> str | None:
    """The verdict code a receipt carries (for the stored receipts' index and the tests)."""
    for entry in receipt_bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "OperationOutcome":
            for issue in resource.get("issue") or []:
                for coding in (issue.get("details") or {}).get("coding") or []:
                    if coding.get("system") == RECEIPT_SYSTEM:
                        return str(coding.get("code"))
    return None
