"""Messaging on the real stack, with the runner's test peer (``infra/local/message_peer.py``)
standing in for off-platform EHRs behind the ``message-transport`` binding.

Each test addresses its own HER-id, so the peer's behaviour for one party (answering errors,
answering slowly) does not leak into another test. Retry timings are the runner's local ones
(6 attempts, 0.5 s doubling up to 4 s, 4 s leases).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from akson_common.identifiers import organisation_number_valid
from tests.integration.conftest import Platform, eventually
from tests.integration.test_foundation import document_reference, gp_headers, put_person
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

OPERATOR_SCOPES = "Communication.read Communication.search Communication.write"
REGISTRY = "Patient.write CareRelation.write"
DIRECTORY = "Organization.write"
HER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.2"
NATIONAL_ID_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
HOSPITAL_HER_ID = "90500"
_her_serial = iter(range(61_000_000, 62_000_000))
_hpr_serial = iter(range(83_000_000, 84_000_000))
_org_serial = iter(range(30_000_000, 40_000_000))


def new_her_id() -> str:
    return str(next(_her_serial))


def new_org_number() -> str:
    while not organisation_number_valid(number := f"{next(_org_serial)}0"):
        pass
    return number


def operator(platform: Platform) -> dict[str, str]:
    token = platform.token("messaging", subject="ops", kind="system", scope=OPERATOR_SCOPES)
    return {"authorization": f"Bearer {token}"}


def masterdata(platform: Platform, scope: str) -> dict[str, str]:
    token = platform.token("masterdata", subject="registry-sync", kind="system", scope=scope)
    return {"authorization": f"Bearer {token}"}


def peer(platform: Platform) -> str:
    return str(platform.endpoints["message_peer"]["url"])


def behave(http: httpx.Client, platform: Platform, her_id: str, mode: str, **how: Any) -> None:
    answer = http.put(f"{peer(platform)}/admin/parties/{her_id}", json={"mode": mode, **how})
    assert answer.status_code == 200, answer.text


def peer_received(http: httpx.Client, platform: Platform, her_id: str) -> dict[str, Any]:
    answer = http.get(f"{peer(platform)}/admin/received", params={"her_id": her_id})
    result: dict[str, Any] = answer.json()
    return result


def send(
    http: httpx.Client,
    platform: Platform,
    her_id: str,
    patient: str,
    headers: dict[str, str] | None = None,
    **overrides: Any,
) -> httpx.Response:
    body = {
        "kind": "referral",
        "patient": patient,
        "recipient_her_id": her_id,
        "text": "Henvisning: vurdering av brystsmerter.",
        **overrides,
    }
    return http.post(
        f"{platform.url('messaging')}/messages", json=body, headers=headers or operator(platform)
    )


def message(http: httpx.Client, platform: Platform, message_id: str) -> dict[str, Any]:
    answer = http.get(
        f"{platform.url('messaging')}/messages/{message_id}", headers=operator(platform)
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def when_status(
    http: httpx.Client, platform: Platform, message_id: str, status: str, timeout: float = 30
) -> dict[str, Any]:
    result: dict[str, Any] = eventually(
        lambda: (m := message(http, platform, message_id))["status"] == status and m,
        timeout=timeout,
    )
    return result


def statuses(message: dict[str, Any]) -> list[str]:
    return [change["status"] for change in message["history"]]


def stream_events(platform: Platform, topic: str) -> list[dict[str, Any]]:
    """The CloudEvents a topic's stream holds (Dapr keeps each in a ``data`` field)."""
    events = []
    for line in platform.stream(topic).splitlines():
        if line.startswith("{") and '"specversion"' in line:
            events.append(json.loads(line))
    return events


def events_about(platform: Platform, topic: str, message_id: str) -> list[dict[str, Any]]:
    """One message's events on a topic, once each (delivery is at least once: the outbox may
    publish an event twice, always with the same id)."""
    unique = {
        e["id"]: e
        for e in stream_events(platform, topic)
        if e["data"].get("message_id") == message_id
    }
    return list(unique.values())


def with_gp(
    http: httpx.Client, platform: Platform, patient: str, hpr: str, unit: str | None = None
) -> str:
    """The patient in master data with ``hpr`` as GP (through ``unit`` if given), once
    messaging's projection has the relation."""
    assert put_person(http, platform, patient).status_code == 200
    relation = {
        "relation_id": f"rel-{uuid.uuid4().hex[:12]}",
        "patient": patient,
        "kind": "gp_list",
        "practitioner": hpr,
        "period_start": "2020-01-01",
        **({"unit": unit} if unit else {}),
    }
    saved = http.put(
        f"{platform.url('masterdata')}/care-relations/{relation['relation_id']}",
        json=relation,
        headers=masterdata(platform, REGISTRY),
    )
    assert saved.status_code in (200, 204), saved.text
    eventually(lambda: platform.db("messaging").care_relations.find_one({"patient": patient}))
    return str(relation["relation_id"])


def organisation(http: httpx.Client, platform: Platform, her_id: str, *, on_platform: bool) -> str:
    org = new_org_number()
    body = {
        "org_number": org,
        "name": "Fastlegekontoret",
        "municipality": "4601",
        "service_type": "gp_office",
        "her_id": her_id,
        "on_platform": on_platform,
    }
    saved = http.put(
        f"{platform.url('masterdata')}/organisations/{org}",
        json=body,
        headers=masterdata(platform, DIRECTORY),
    )
    assert saved.status_code in (200, 204), saved.text
    eventually(lambda: platform.db("messaging").organisations.find_one({"_id": org}))
    return org


def inbound_bundle(message_id: str, patient: str, sender: str = HOSPITAL_HER_ID) -> dict[str, Any]:
    focus = f"urn:uuid:{uuid.uuid4()}"
    return {
        "resourceType": "Bundle",
        "id": message_id,
        "type": "message",
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "MessageHeader",
                    "id": message_id,
                    "eventCoding": {"system": "urn:akson:message-event",
                                    "code": "discharge_summary"},
                    "source": {"endpoint": f"her:{sender}"},
                    "sender": {"identifier": {"system": HER_SYSTEM, "value": sender}},
                    "destination": [{"endpoint": "her:8000001"}],
                    "focus": [{"reference": focus}],
                },
            },
            {
                "fullUrl": focus,
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": {"identifier": {"system": NATIONAL_ID_SYSTEM, "value": patient}},
                    "identifier": [{"system": "urn:hospital:epikrise",
                                    "value": f"epi-{message_id}"}],
                    "content": [{"attachment": {"contentType": "text/plain",
                                                "data": "RXBpa3Jpc2U="}}],
                },
            },
        ],
    }  # fmt: skip


def deliver_inbound(http: httpx.Client, platform: Platform, bundle: Any) -> httpx.Response:
    return http.post(
        f"{platform.url('messaging')}/messages/inbound",
        json=bundle,
        headers={"authorization": f"Bearer {platform.tokens['message_inbound_token']}"},
    )


# -- outbound ---------------------------------------------------------------------------------


def test_a_message_is_sent_receipted_and_its_status_visible(
    platform: Platform, http: httpx.Client
) -> None:
    her_id, patient, hpr = new_her_id(), new_patient_id(), str(next(_hpr_serial))
    with_gp(http, platform, patient, hpr)
    doctor = gp_headers(platform, hpr, unit="unit-msg", audience="messaging")

    stranger = gp_headers(platform, str(next(_hpr_serial)), unit="unit-x", audience="messaging")
    refused = send(http, platform, her_id, patient, headers=stranger)
    assert refused.status_code == 403, refused.text
    assert "no_care_relation" in refused.json()["reasons"]

    queued = send(http, platform, her_id, patient, headers=doctor)
    assert queued.status_code == 202, queued.text
    sent = queued.json()
    assert sent["status"] == "queued" and queued.headers["location"] == f"/messages/{sent['id']}"
    bundle = Bundle.model_validate(sent["bundle"])
    assert bundle.type == "message" and bundle.id == sent["id"]
    header = sent["bundle"]["entry"][0]["resource"]
    assert header["destination"][0]["endpoint"] == f"her:{her_id}"
    assert header["destination"][0]["receiver"]["identifier"] == {
        "system": HER_SYSTEM,
        "value": her_id,
    }

    done = when_status(http, platform, sent["id"], "receipted_ok")
    assert statuses(done) == ["queued", "delivered", "receipted_ok"]
    assert done["attempts"] == 1 and done["receipt"]["status"] == "ok"
    arrived = peer_received(http, platform, her_id)["messages"]
    assert [m["message_id"] for m in arrived] == [sent["id"]]
    # the practitioner sees the status of their patient's messages
    mine = http.get(
        f"{platform.url('messaging')}/messages", params={"patient": patient}, headers=doctor
    )
    assert [m["id"] for m in mine.json()["items"]] == [sent["id"]]
    assert "akson-decision-id" in mine.headers
    # every status change is an event; identifiers and codes only, never the text
    for topic in ("queued", "delivered", "receipted"):
        (event,) = eventually(
            partial(events_about, platform, f"messaging.message.{topic}", sent["id"])
        )
        assert event["data"]["patient"] == patient
    assert "brystsmerter" not in platform.stream("messaging.message.queued")


def test_with_the_peer_down_a_message_is_retried_and_delivered_when_it_comes_back(
    platform: Platform, http: httpx.Client
) -> None:
    her_id, patient = new_her_id(), new_patient_id()
    platform.stack.stop("message-peer")
    try:
        queued = send(http, platform, her_id, patient)
        assert queued.status_code == 202, queued.text
        message_id = queued.json()["id"]
        retrying = eventually(
            lambda: (m := message(http, platform, message_id))["attempts"] >= 2 and m
        )
        assert retrying["status"] == "queued"
        assert retrying["last_error_code"] == "transport_unavailable"
        assert retrying["next_attempt_at"] is not None
    finally:
        platform.stack.start("message-peer")
    done = when_status(http, platform, message_id, "receipted_ok")
    assert done["attempts"] >= 3 and "delivered" in statuses(done)
    assert events_about(platform, "messaging.message.retry_scheduled", message_id)


def test_with_the_peer_answering_errors_the_message_ends_dead_lettered_with_the_reason(
    platform: Platform, http: httpx.Client
) -> None:
    her_id, patient = new_her_id(), new_patient_id()
    behave(http, platform, her_id, "error", reason="EPJ utilgjengelig: vedlikehold")
    queued = send(http, platform, her_id, patient)
    message_id = queued.json()["id"]

    dead = when_status(http, platform, message_id, "dead_lettered", timeout=40)
    assert dead["attempts"] == 6
    assert dead["last_error_code"] == "peer_http_500"
    assert "EPJ utilgjengelig: vedlikehold" in dead["last_error"]
    assert len(peer_received(http, platform, her_id)["messages"]) == 6
    (alert,) = eventually(
        lambda: events_about(platform, "messaging.message.dead_lettered", message_id)
    )
    assert alert["data"]["error_code"] == "peer_http_500"
    assert "vedlikehold" not in json.dumps(alert)

    listed = http.get(
        f"{platform.url('messaging')}/messages",
        params={"status": "dead_lettered", "limit": 200},
        headers=operator(platform),
    )
    assert message_id in [m["id"] for m in listed.json()["items"]]
    # only an operator lists across patients
    doctor = gp_headers(platform, str(next(_hpr_serial)), audience="messaging")
    nosy = http.get(f"{platform.url('messaging')}/messages", params={"status": "dead_lettered"},
                    headers=doctor)  # fmt: skip
    assert nosy.status_code == 403

    # the peer is repaired; the operator resends from the dead-letter list
    behave(http, platform, her_id, "ok")
    again = http.post(
        f"{platform.url('messaging')}/messages/{message_id}/resend", headers=operator(platform)
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "queued" and again.json()["attempts"] == 0
    done = when_status(http, platform, message_id, "receipted_ok")
    assert statuses(done)[-3:] == ["queued", "delivered", "receipted_ok"]
    not_dead = http.post(
        f"{platform.url('messaging')}/messages/{message_id}/resend", headers=operator(platform)
    )
    assert not_dead.status_code == 409


def test_a_refusing_peer_dead_letters_at_once_and_an_apprec_error_is_kept(
    platform: Platform, http: httpx.Client
) -> None:
    refusing, erring, relaying, patient = new_her_id(), new_her_id(), new_her_id(), new_patient_id()
    behave(http, platform, refusing, "reject", reason="ukjent mottaker")
    behave(http, platform, erring, "apprec_error", reason="pasienten er ikke på listen")
    behave(http, platform, relaying, "accepted")
    refused = send(http, platform, refusing, patient).json()["id"]
    receipted = send(http, platform, erring, patient).json()["id"]
    relayed = send(http, platform, relaying, patient).json()["id"]

    dead = when_status(http, platform, refused, "dead_lettered")
    assert dead["attempts"] == 1 and dead["last_error_code"] == "peer_http_400"
    bad = when_status(http, platform, receipted, "receipted_error")
    assert bad["receipt"]["status"] == "rejected"
    assert bad["receipt"]["issues"] == ["pasienten er ikke på listen"]
    assert bad["last_error_code"] == "apprec_rejected"
    # an exchange that takes a message over (202) has sent it; the AppRec still settles it
    assert statuses(when_status(http, platform, relayed, "receipted_ok")) == [
        "queued",
        "sent",
        "receipted_ok",
    ]


def test_a_receipt_counts_only_from_the_party_the_message_went_to(
    platform: Platform, http: httpx.Client
) -> None:
    her_id, patient = new_her_id(), new_patient_id()
    behave(http, platform, her_id, "silent")
    message_id = send(http, platform, her_id, patient).json()["id"]
    when_status(http, platform, message_id, "delivered")
    forged: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "MessageHeader",
                    "id": str(uuid.uuid4()),
                    "eventCoding": {"system": "urn:akson:message-event", "code": "AppRec"},
                    "source": {"endpoint": f"her:{HOSPITAL_HER_ID}"},
                    "response": {"identifier": message_id, "code": "ok"},
                },
            }
        ],
    }
    answer = deliver_inbound(http, platform, forged)
    assert answer.status_code == 202 and answer.json()["status"] == "receipt_unknown"
    assert message(http, platform, message_id)["status"] == "delivered"
    forged["entry"][0]["resource"]["source"] = {"endpoint": f"her:{her_id}"}
    answer = deliver_inbound(http, platform, forged)
    assert answer.json()["status"] == "receipt_applied"
    assert message(http, platform, message_id)["status"] == "receipted_ok"


# -- inbound ----------------------------------------------------------------------------------


def test_a_duplicate_inbound_message_is_stored_once_and_receipted_twice(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr, message_id = new_patient_id(), str(next(_hpr_serial)), str(uuid.uuid4())
    with_gp(http, platform, patient, hpr)
    bundle = inbound_bundle(message_id, patient)

    first = deliver_inbound(http, platform, bundle)
    second = deliver_inbound(http, platform, bundle)
    assert first.status_code == second.status_code == 202, second.text
    assert first.json()["status"] == "accepted" and first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    assert first.json()["receipt_id"] != second.json()["receipt_id"]

    assert platform.db("messaging").inbound_messages.count_documents({"_id": message_id}) == 1
    deliveries = platform.db("messaging").inbound_deliveries
    assert deliveries.count_documents({"message_id": message_id}) == 2
    # two receipts, both OK, both to the sender, through the binding
    receipts = eventually(
        lambda: len(r := [m for m in peer_received(http, platform, HOSPITAL_HER_ID)["messages"]
                          if m["in_reply_to"] == message_id]) == 2 and r
    )  # fmt: skip
    assert {r["response_code"] for r in receipts} == {"ok"}
    (received,) = eventually(
        lambda: events_about(platform, "messaging.message.received", message_id)
    )
    assert received["data"]["patient"] == patient and received["data"]["sender_her_id"] == "90500"

    # the journal side: the GP reads it, a stranger does not
    doctor = gp_headers(platform, hpr, unit="unit-msg", audience="messaging")
    read = http.get(f"{platform.url('messaging')}/messages/inbound/{message_id}", headers=doctor)
    assert read.status_code == 200 and read.json()["document_id"] == f"epi-{message_id}"
    assert read.json()["deliveries"] == 2
    assert read.json()["receipts"] == [first.json()["receipt_id"], second.json()["receipt_id"]]
    stranger = gp_headers(platform, str(next(_hpr_serial)), audience="messaging")
    hidden = http.get(
        f"{platform.url('messaging')}/messages/inbound/{message_id}", headers=stranger
    )
    assert hidden.status_code == 404  # refused reads like unknown


def test_inbound_messages_are_authenticated_validated_and_rejected_with_a_receipt(
    platform: Platform, http: httpx.Client
) -> None:
    message_id = str(uuid.uuid4())
    bundle = inbound_bundle(message_id, "12345678901")  # not a valid national id
    anonymous = http.post(f"{platform.url('messaging')}/messages/inbound", json=bundle)
    assert anonymous.status_code == 401
    unreadable = deliver_inbound(http, platform, {"resourceType": "Bundle", "type": "message"})
    assert unreadable.status_code == 400

    rejected = deliver_inbound(http, platform, bundle)
    assert rejected.status_code == 202 and rejected.json()["status"] == "rejected"
    assert rejected.json()["errors"] == ["the patient is not identified by a valid national id"]
    (receipt,) = eventually(
        lambda: [m for m in peer_received(http, platform, HOSPITAL_HER_ID)["messages"]
                 if m["in_reply_to"] == message_id]
    )  # fmt: skip
    assert receipt["response_code"] == "fatal-error"
    assert not events_about(platform, "messaging.message.received", message_id)


# -- crash safety -----------------------------------------------------------------------------


def test_no_message_is_lost_when_messaging_is_restarted_mid_flight(
    platform: Platform, http: httpx.Client
) -> None:
    her_id, patient = new_her_id(), new_patient_id()
    behave(http, platform, her_id, "slow", delay_seconds=1.5)
    ids = [send(http, platform, her_id, patient).json()["id"] for _ in range(4)]
    outbound = platform.db("messaging").outbound_messages
    # one is on the wire (claimed under a lease) when messaging goes down
    eventually(lambda: outbound.find_one({"_id": {"$in": ids}, "lease_owner": {"$ne": None}}))
    platform.stack.stop("messaging-app")
    in_flight = list(outbound.find({"_id": {"$in": ids}, "status": "queued"}))
    assert in_flight, "every message was settled before the restart"
    platform.stack.start("messaging-app")

    done = [when_status(http, platform, i, "receipted_ok", timeout=60) for i in ids]
    assert all(m["receipt"]["status"] == "ok" for m in done)
    arrived = {m["message_id"] for m in peer_received(http, platform, her_id)["messages"]}
    assert arrived == set(ids)


# -- dispatch rules ---------------------------------------------------------------------------


def publish_document_recorded(
    http: httpx.Client, platform: Platform, patient: str, type_code: str, **facts: Any
) -> dict[str, Any]:
    """What the journal publishes when a document is recorded (the event is the contract)."""
    data = {
        "document_id": f"doc-{uuid.uuid4().hex[:12]}",
        "version": 1,
        "patient": patient,
        "category": "general",
        "type_code": type_code,
        "author": "9144900",
        "unit": "974760673",
        "organisation": "974760673",
        "municipality": "4601",
        "recorded_at": datetime.now(UTC).isoformat(),
        **facts,
    }
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "akson/journal",
        "type": "journal.document.recorded.v1",
        "subject": patient,
        "datacontenttype": "application/json",
        "data": data,
    }
    platform.publish("journal", "journal.document.recorded", envelope)
    return envelope


def test_a_discharge_summary_for_a_patient_whose_gp_is_off_the_platform_goes_to_the_gp(
    platform: Platform, http: httpx.Client
) -> None:
    off_her, on_her = new_her_id(), new_her_id()
    off_org = organisation(http, platform, off_her, on_platform=False)
    on_org = organisation(http, platform, on_her, on_platform=True)
    patient, neighbour = new_patient_id(), new_patient_id()
    with_gp(http, platform, patient, str(next(_hpr_serial)), unit=off_org)
    with_gp(http, platform, neighbour, str(next(_hpr_serial)), unit=on_org)
    outbound = platform.db("messaging").outbound_messages

    summary = publish_document_recorded(http, platform, patient, "18842-5")
    progress_note = publish_document_recorded(http, platform, patient, "11506-3")
    on_platform = publish_document_recorded(http, platform, neighbour, "18842-5")
    # the same event delivered twice still makes one message
    sidecar = platform.endpoints["services"]["journal"]["dapr_http"]
    http.post(f"{sidecar}/v1.0/publish/pubsub/journal.document.recorded", json=summary,
              headers={"content-type": "application/cloudevents+json",
                       "dapr-api-token": platform.tokens["dapr_api_token"]})  # fmt: skip

    document_id = summary["data"]["document_id"]
    created = eventually(lambda: outbound.find_one({"document_id": document_id}))
    assert created["recipient_her_id"] == off_her and created["trigger"] == "rule"
    assert created["kind"] == "discharge_summary"
    done = when_status(http, platform, created["_id"], "receipted_ok")
    focus = done["bundle"]["entry"][1]["resource"]
    assert focus["identifier"] == [{"system": "urn:akson:journal-document", "value": document_id}]
    assert all("data" not in c["attachment"] for c in focus["content"])  # a reference, no text
    # a later event for the same patient has been handled, so the others had their chance too
    publish_document_recorded(http, platform, patient, "18842-5", document_id="doc-marker")
    eventually(lambda: outbound.find_one({"document_id": "doc-marker"}))
    assert outbound.count_documents({"document_id": document_id}) == 1
    assert outbound.count_documents({"document_id": progress_note["data"]["document_id"]}) == 0
    assert outbound.count_documents({"document_id": on_platform["data"]["document_id"]}) == 0
    assert [m["message_id"] for m in peer_received(http, platform, off_her)["messages"]][:1] == [
        created["_id"]
    ]


def test_a_discharge_summary_written_in_the_journal_is_sent_to_the_off_platform_gp(
    platform: Platform, http: httpx.Client
) -> None:
    """End to end: the journal records the document and publishes the event; messaging sends."""
    gp_her = new_her_id()
    gp_office = organisation(http, platform, gp_her, on_platform=False)
    patient, writer = new_patient_id(), str(next(_hpr_serial))
    with_gp(http, platform, patient, str(next(_hpr_serial)), unit=gp_office)
    ward_relation = {
        "relation_id": f"rel-{uuid.uuid4().hex[:12]}",
        "patient": patient,
        "kind": "nursing_home",
        "practitioner": writer,
        "period_start": "2020-01-01",
    }
    saved = http.put(
        f"{platform.url('masterdata')}/care-relations/{ward_relation['relation_id']}",
        json=ward_relation,
        headers=masterdata(platform, REGISTRY),
    )
    assert saved.status_code in (200, 204), saved.text
    relations = platform.db("journal").care_relations
    eventually(lambda: relations.find_one({"_id": ward_relation["relation_id"]}))
    summary = {
        **document_reference(patient, "Epikrise: innlagt med pneumoni, behandlet med penicillin."),
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
    }
    written = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        content=json.dumps(summary),
        headers={
            **gp_headers(platform, writer, unit="unit-ward"),
            "content-type": "application/fhir+json",
        },
    )
    assert written.status_code == 201, written.text
    document_id = written.json()["id"]

    outbound = platform.db("messaging").outbound_messages
    created = eventually(lambda: outbound.find_one({"document_id": document_id}), timeout=30)
    assert created["recipient_her_id"] == gp_her and created["kind"] == "discharge_summary"
    done = when_status(http, platform, created["_id"], "receipted_ok")
    assert "pneumoni" not in json.dumps(done["bundle"])  # a reference to the document, no text
