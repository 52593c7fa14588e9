"""Electronic messages as FHIR message bundles, built and validated with fhir.resources' R4B
models (wire-compatible with R4 for Bundle, MessageHeader, DocumentReference, OperationOutcome).

Addressing: a communication party is named by its HER-id twice — as the destination's (and
source's) ``endpoint`` ``her:<HER-id>`` (the transport address the exchange routes on) and as
the ``receiver``'s (``sender``'s) identifier in the address register's system
``urn:oid:2.16.578.1.12.4.1.2``. The patient is an identifier (national id system
``urn:oid:2.16.578.1.12.4.1.4.1``), never a name or an address.

A message is ``Bundle.type = message``, first entry the ``MessageHeader`` (id = ``Bundle.id`` =
the message id; ``eventCoding`` in ``urn:akson:message-event``: ``referral``,
``discharge_summary``, ...), its ``focus`` a ``DocumentReference`` that identifies the journal
document (and, for explicit sends, carries the sender's text). An application receipt (AppRec)
is a message of its own (event ``AppRec``) whose ``response.identifier`` is the id of the
message it answers: ``ok``, ``ok`` with warning issues (OK with errors), or ``fatal-error``
(rejected) with an ``OperationOutcome`` saying why.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from akson_common.fhir import FHIR_JSON
from akson_common.identifiers import is_her_id, is_national_id
from messaging.models import ReceiptStatus

HER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.2"
NATIONAL_ID_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
EVENT_SYSTEM = "urn:akson:message-event"
CATEGORY_SYSTEM = "urn:akson:category"
DOCUMENT_SYSTEM = "urn:akson:journal-document"
LOINC = "http://loinc.org"
APPREC = "AppRec"
# the document type a message kind carries when the sender names none
KIND_TYPES = {
    "referral": "57133-1",
    "discharge_summary": "18842-5",
    "discharge_report": "34745-0",
    "care_information": "34133-9",
    "care_message": "34109-9",
}
RECEIVABLE_KINDS = frozenset(KIND_TYPES)


def her_endpoint(her_id: str) -> str:
    return f"her:{her_id}"


def _party(her_id: str) -> dict[str, Any]:
    return {"identifier": {"system": HER_SYSTEM, "value": her_id}}


def _header(
    message_id: str, event: str, sender_her_id: str, recipient_her_id: str
) -> dict[str, Any]:
    return {
        "resourceType": "MessageHeader",
        "id": message_id,
        "eventCoding": {"system": EVENT_SYSTEM, "code": event},
        "source": {"endpoint": her_endpoint(sender_her_id)},
        "sender": _party(sender_her_id),
        "destination": [
            {"endpoint": her_endpoint(recipient_her_id), "receiver": _party(recipient_her_id)}
        ],
    }


def _validated(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle as fhir.resources serialises it after validation (raises when invalid)."""
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)


def message_bundle(
    *,
    message_id: str,
    kind: str,
    at: datetime,
    sender_her_id: str,
    recipient_her_id: str,
    patient: str,
    category: str,
    document_id: str | None,
    type_code: str | None,
    text: str | None,
    journal_fhir_base: str,
) -> dict[str, Any]:
    """A clinical message: header plus a DocumentReference naming the journal document (by id
    and its FHIR URL, readable by a recipient with a platform token) and any text the sender
    wrote for this message."""
    focus = _entry_url(message_id, "focus")
    content: list[dict[str, Any]] = []
    if document_id is not None:
        content.append(
            {
                "attachment": {
                    "contentType": FHIR_JSON,
                    "url": f"{journal_fhir_base.rstrip('/')}/DocumentReference/{document_id}",
                }
            }
        )
    if text is not None:
        content.append(
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        )
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": type_code or KIND_TYPES[kind]}]},
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "subject": {"identifier": {"system": NATIONAL_ID_SYSTEM, "value": patient}},
        "date": at.isoformat(),
        "content": content,
    }
    if document_id is not None:
        document["identifier"] = [{"system": DOCUMENT_SYSTEM, "value": document_id}]
    header = _header(message_id, kind, sender_her_id, recipient_her_id)
    header["focus"] = [{"reference": focus}]
    return _validated(
        {
            "resourceType": "Bundle",
            "id": message_id,
            "type": "message",
            "timestamp": at.isoformat(),
            "entry": [
                {"fullUrl": _entry_url(message_id, "header"), "resource": header},
                {"fullUrl": focus, "resource": document},
            ],
        }
    )


def _entry_url(message_id: str, role: str) -> str:
    """A stable ``urn:uuid`` for one entry of one message (the same message, the same URLs)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'akson-message:{message_id}:{role}')}"


def apprec_bundle(
    *,
    apprec_id: str,
    at: datetime,
    sender_her_id: str,
    recipient_her_id: str,
    in_reply_to: str,
    status: ReceiptStatus,
    issues: list[str],
) -> dict[str, Any]:
    """An application receipt for message ``in_reply_to``."""
    header = _header(apprec_id, APPREC, sender_her_id, recipient_her_id)
    response: dict[str, Any] = {
        "identifier": in_reply_to,
        "code": "fatal-error" if status == "rejected" else "ok",
    }
    entries: list[dict[str, Any]] = [{"fullUrl": _entry_url(apprec_id, "header")}]
    if issues:
        outcome_url = _entry_url(apprec_id, "outcome")
        response["details"] = {"reference": outcome_url}
        severity = "error" if status == "rejected" else "warning"
        entries.append(
            {
                "fullUrl": outcome_url,
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": severity, "code": "processing", "diagnostics": issue[:500]}
                        for issue in issues
                    ],
                },
            }
        )
    header["response"] = response
    entries[0]["resource"] = header
    return _validated(
        {
            "resourceType": "Bundle",
            "id": apprec_id,
            "type": "message",
            "timestamp": at.isoformat(),
            "entry": entries,
        }
    )


class Unreadable(ValueError):
    """Not a message we can even answer: no message id or no sender to receipt to."""


@dataclass
class ParsedMessage:
    """What an inbound bundle says; ``errors`` non-empty means it is to be rejected."""

    message_id: str
    sender_her_id: str
    kind: str
    recipient_her_id: str | None = None
    patient: str | None = None
    document_id: str | None = None
    in_reply_to: str | None = None
    receipt_status: ReceiptStatus | None = None
    receipt_issues: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def is_receipt(self) -> bool:
        return self.kind == APPREC


def _first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def _her_of(party: Any, endpoint: Any) -> str | None:
    identifier = party.get("identifier") if isinstance(party, dict) else None
    if isinstance(identifier, dict) and identifier.get("system") == HER_SYSTEM:
        value = identifier.get("value")
        if isinstance(value, str) and is_her_id(value):
            return value
    if isinstance(endpoint, str) and endpoint.startswith("her:") and is_her_id(endpoint[4:]):
        return endpoint[4:]
    return None


def parse_message(raw: Any) -> ParsedMessage:
    """Read an inbound message bundle: raise :class:`Unreadable` when it cannot be answered,
    else return it with the reasons (``errors``) it must be rejected for, if any."""
    entry = _first(raw.get("entry")) if isinstance(raw, dict) else None
    header = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(header, dict) or header.get("resourceType") != "MessageHeader":
        raise Unreadable("the first entry of a message bundle must be a MessageHeader")
    message_id = header.get("id")
    if not isinstance(message_id, str) or not message_id or len(message_id) > 64:
        raise Unreadable("the MessageHeader has no id")
    source = header.get("source")
    sender = _her_of(header.get("sender"), source.get("endpoint") if source else None)
    if sender is None:
        raise Unreadable("the sender has no HER-id")
    coding = header.get("eventCoding")
    kind = coding.get("code") if isinstance(coding, dict) else None
    parsed = ParsedMessage(message_id=message_id, sender_her_id=sender, kind=str(kind or ""))
    try:
        bundle = Bundle.model_validate(raw)
    except ValidationError as error:
        parsed.errors = [
            f"invalid FHIR at {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in error.errors(include_input=False)[:10]
        ]
        return parsed
    if bundle.type != "message":
        parsed.errors.append("Bundle.type must be 'message'")
    destination = _first(header.get("destination"))
    if isinstance(destination, dict):
        parsed.recipient_her_id = _her_of(destination.get("receiver"), destination.get("endpoint"))
    if parsed.is_receipt:
        _read_receipt(parsed, header, raw)
        return parsed
    if parsed.kind not in RECEIVABLE_KINDS:
        parsed.errors.append(f"unsupported message kind {parsed.kind!r}")
    _read_focus(parsed, raw)
    return parsed


def _resources(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        e["fullUrl"]: e["resource"]
        for e in raw.get("entry", [])
        if isinstance(e, dict) and isinstance(e.get("resource"), dict) and e.get("fullUrl")
    }


def _read_focus(parsed: ParsedMessage, raw: dict[str, Any]) -> None:
    header = raw["entry"][0]["resource"]
    focus = _first(header.get("focus"))
    reference = focus.get("reference") if isinstance(focus, dict) else None
    resource = _resources(raw).get(str(reference))
    if resource is None:
        parsed.errors.append("the MessageHeader's focus is not in the bundle")
        return
    subject = resource.get("subject")
    identifier = subject.get("identifier") if isinstance(subject, dict) else None
    value = identifier.get("value") if isinstance(identifier, dict) else None
    if (
        not isinstance(identifier, dict)
        or identifier.get("system") != NATIONAL_ID_SYSTEM
        or not isinstance(value, str)
        or not is_national_id(value)
    ):
        parsed.errors.append("the patient is not identified by a valid national id")
    else:
        parsed.patient = value
    for document_identifier in resource.get("identifier") or []:
        if isinstance(document_identifier, dict) and document_identifier.get("value"):
            parsed.document_id = str(document_identifier["value"])[:128]
            break


def _read_receipt(parsed: ParsedMessage, header: dict[str, Any], raw: dict[str, Any]) -> None:
    response = header.get("response")
    if not isinstance(response, dict) or not response.get("identifier"):
        parsed.errors.append("an AppRec names the message it answers in response.identifier")
        return
    parsed.in_reply_to = str(response["identifier"])
    details = response.get("details")
    outcome = _resources(raw).get(str(details.get("reference"))) if details else None
    issues = outcome.get("issue", []) if isinstance(outcome, dict) else []
    parsed.receipt_issues = [
        str(i.get("diagnostics") or i.get("code") or "")[:500]
        for i in issues
        if isinstance(i, dict)
    ]
    if response.get("code") != "ok":
        parsed.receipt_status = "rejected"
    elif parsed.receipt_issues:
        parsed.receipt_status = "ok_with_errors"
    else:
        parsed.receipt_status = "ok"
