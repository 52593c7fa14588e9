"""Message bundles and application receipts: built valid, read back, refused with reasons."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from akson_common.identifiers import synthetic_national_id
from messaging import fhir
from messaging.models import ReceiptStatus

PATIENT = synthetic_national_id(datetime(1970, 1, 1).date(), 0)
AT = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def referral(**overrides: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "kind": "referral",
        "at": AT,
        "sender_her_id": "8000001",
        "recipient_her_id": "123456",
        "patient": PATIENT,
        "category": "general",
        "document_id": "doc-1",
        "type_code": None,
        "text": "Henvisning til kardiolog.",
        "journal_fhir_base": "https://akson.test/journal/fhir/R4/",
        **overrides,
    }
    return fhir.message_bundle(**facts)


def test_a_message_bundle_is_a_valid_fhir_message_addressed_by_her_id() -> None:
    bundle = referral()
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "message"
    header, document = (e["resource"] for e in bundle["entry"])
    assert header["id"] == bundle["id"]
    assert header["eventCoding"] == {"system": fhir.EVENT_SYSTEM, "code": "referral"}
    assert header["destination"] == [
        {
            "endpoint": "her:123456",
            "receiver": {"identifier": {"system": fhir.HER_SYSTEM, "value": "123456"}},
        }
    ]
    assert header["focus"] == [{"reference": bundle["entry"][1]["fullUrl"]}]
    assert document["subject"]["identifier"]["value"] == PATIENT
    assert document["type"]["coding"][0]["code"] == "57133-1"
    url, text = (c["attachment"] for c in document["content"])
    assert url["url"] == "https://akson.test/journal/fhir/R4/DocumentReference/doc-1"
    assert base64.b64decode(text["data"]).decode() == "Henvisning til kardiolog."


def test_the_same_message_builds_the_same_entry_urls() -> None:
    message_id = str(uuid.uuid4())
    first, second = referral(message_id=message_id), referral(message_id=message_id)
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in second["entry"]]


def test_a_rule_message_refers_to_the_document_without_text() -> None:
    bundle = referral(kind="discharge_summary", text=None, type_code="18842-5")
    document = bundle["entry"][1]["resource"]
    assert [c["attachment"].get("data") for c in document["content"]] == [None]
    assert document["identifier"] == [{"system": fhir.DOCUMENT_SYSTEM, "value": "doc-1"}]


def test_a_message_reads_back_as_what_was_sent() -> None:
    bundle = referral()
    parsed = fhir.parse_message(bundle)
    assert parsed.errors == []
    assert (parsed.message_id, parsed.sender_her_id, parsed.kind) == (
        bundle["id"],
        "8000001",
        "referral",
    )
    assert (parsed.patient, parsed.document_id, parsed.recipient_her_id) == (
        PATIENT,
        "doc-1",
        "123456",
    )


@pytest.mark.parametrize(
    ("status", "code", "issues"),
    [
        ("ok", "ok", []),
        ("ok_with_errors", "ok", ["mangler diagnose"]),
        ("rejected", "fatal-error", ["ukjent pasient"]),
    ],
)  # fmt: skip
def test_an_apprec_answers_the_message_and_reads_back(
    status: ReceiptStatus, code: str, issues: list[str]
) -> None:
    apprec = fhir.apprec_bundle(
        apprec_id=str(uuid.uuid4()),
        at=AT,
        sender_her_id="8000001",
        recipient_her_id="90500",
        in_reply_to="m-1",
        status=status,
        issues=issues,
    )
    header = apprec["entry"][0]["resource"]
    assert header["response"]["code"] == code and header["response"]["identifier"] == "m-1"
    parsed = fhir.parse_message(apprec)
    assert parsed.is_receipt and parsed.in_reply_to == "m-1"
    assert (parsed.receipt_status, parsed.receipt_issues) == (status, issues)


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"resourceType": "Bundle", "type": "message", "entry": []},
        {"entry": [{"resource": {"resourceType": "Patient"}}]},
        {"entry": [{"resource": {"resourceType": "MessageHeader", "source": {"endpoint": "her:1"}}}]},  # noqa: E501
        {"entry": [{"resource": {"resourceType": "MessageHeader", "id": "m", "source": {}}}]},
    ],
)  # fmt: skip
def test_a_message_without_id_or_sender_cannot_be_answered(raw: dict[str, Any]) -> None:
    with pytest.raises(fhir.Unreadable):
        fhir.parse_message(raw)


def test_an_answerable_but_invalid_message_is_rejected_with_reasons() -> None:
    bundle = referral(kind="referral")
    bundle["entry"][0]["resource"]["eventCoding"]["code"] = "lottery"
    bundle["entry"][1]["resource"]["subject"]["identifier"]["value"] = "12345678901"
    parsed = fhir.parse_message(bundle)
    assert parsed.errors == [
        "unsupported message kind 'lottery'",
        "the patient is not identified by a valid national id",
    ]
    broken = referral()
    broken["timestamp"] = "whenever"
    errors = fhir.parse_message(broken).errors
    assert errors and all(e.startswith("invalid FHIR at ") for e in errors)
    assert not any("whenever" in e for e in errors)  # the input is never echoed
    collection = referral()
    collection["type"] = "collection"
    assert fhir.parse_message(collection).errors == ["Bundle.type must be 'message'"]
