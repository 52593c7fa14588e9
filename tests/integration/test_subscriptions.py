"""Topic-based subscriptions (issue 18, Subscriptions R5 Backport on R4) against the running
stack, through the one FHIR base: a subscriber endpoint run by the test (a small HTTP server on
127.0.0.1) gets the handshake, signed id-only notifications for a patient its practitioner
treats, heartbeats; none for a patient who blocked that practitioner (the refusal is in the
decision log); a failing endpoint is retried until the subscription is in error; hostile input
is a 4xx OperationOutcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Platform, eventually
from tests.integration.test_consent import block
from tests.integration.test_foundation import document_reference, gp_headers, put_person
from tests.integration.test_journal import allergy, create, medication
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

FHIR = "application/fhir+json"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
SECRET_URL = "https://akson.no/fhir/StructureDefinition/subscription-signing-secret"
DOCUMENTS = "https://akson.no/fhir/SubscriptionTopic/document-recorded"
_hpr = iter(range(9_150_000 + uuid.uuid4().int % 5_000 * 10, 9_200_000))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def bundle(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document

    @property
    def kind(self) -> str:
        return str(parameter(self.bundle["entry"][0]["resource"], "type")["valueCode"])


@dataclass
class Subscriber:
    """The subscriber's endpoint: ``/ok/...`` answers 200, ``/fail/...`` 500, ``/flaky/...``
    200 to the handshake and 500 to everything after."""

    port: int
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, mode: str = "ok") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/{uuid.uuid4().hex}"

    def at(self, url: str, kind: str | None = None) -> list[Received]:
        path = httpx.URL(url).path
        with self.lock:
            found = [r for r in self.received if r.path == path]
        return [r for r in found if kind is None or r.kind == kind]


@pytest.fixture(scope="module")
def subscriber() -> Iterator[Subscriber]:
    received: list[Received] = []
    lock = threading.Lock()

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with lock:
                received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            failing = self.path.startswith("/fail/") or (
                self.path.startswith("/flaky/") and b'"handshake"' not in body
            )
            self.send_response(500 if failing else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test asserts on what arrived

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Subscriber(server.server_address[1], received, lock)
    finally:
        server.shutdown()
        server.server_close()


def parameter(parameters: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in parameters["parameter"] if p["name"] == name)
    return found


def verified(received: Received, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers.get("x-akson-signature", ""), expected)


def subscription(
    patient: str,
    endpoint: str,
    secret: str,
    topic: str = DOCUMENTS,
    resource: str = "DocumentReference",
    channel: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Varsle fastlegen om nye dokumenter",
        "criteria": topic,
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-filter-criteria",
                    "valueString": f"{resource}?patient=Patient/{patient}",
                }
            ]
        },
        "extension": [{"url": SECRET_URL, "valueString": secret}],
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": FHIR,
            "_payload": {
                "extension": [
                    {"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}
                ]
            },
            **(channel or {}),
        },
    }


@dataclass
class Case:
    patient: str
    hpr: str
    fhir: dict[str, str]  # the practitioner's headers for the one FHIR base
    journal: dict[str, str]  # the same practitioner's, for the journal


def treated_patient(platform: Platform, http: httpx.Client) -> Case:
    patient, hpr = new_patient_id(), str(next(_hpr))
    assert put_person(http, platform, patient).status_code == 200
    platform.relate(patient, hpr=hpr, seen_by="messaging")
    eventually(lambda: platform.db("journal").care_relations.find_one({"patient": patient}))
    return Case(
        patient,
        hpr,
        gp_headers(platform, hpr, audience="gateway"),
        gp_headers(platform, hpr),
    )


def base(platform: Platform) -> str:
    return str(platform.endpoints["fhir"]["base"])


def subscribe(
    http: httpx.Client, platform: Platform, case: Case, body: dict[str, Any]
) -> dict[str, Any]:
    answer = http.post(
        f"{base(platform)}/Subscription",
        content=json.dumps(body),
        headers={**case.fhir, "content-type": FHIR},
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert created["resourceType"] == "Subscription" and created["status"] == "requested"
    assert answer.headers["location"].endswith(f"/Subscription/{created['id']}")
    assert SECRET_URL not in answer.text  # the secret is never answered back
    return created


def read(http: httpx.Client, platform: Platform, case: Case, subscription_id: str) -> Any:
    answer = http.get(f"{base(platform)}/Subscription/{subscription_id}", headers=case.fhir)
    assert answer.status_code == 200, answer.text
    return answer.json()


def when_status(
    http: httpx.Client, platform: Platform, case: Case, subscription_id: str, status: str
) -> dict[str, Any]:
    found: dict[str, Any] = eventually(
        lambda: (s := read(http, platform, case, subscription_id))["status"] == status and s,
        timeout=30,
    )
    return found


def status_of(
    http: httpx.Client, platform: Platform, case: Case, subscription_id: str
) -> dict[str, Any]:
    answer = http.get(f"{base(platform)}/Subscription/{subscription_id}/$status", headers=case.fhir)
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    (entry,) = bundle["entry"]
    status: dict[str, Any] = entry["resource"]
    assert status["resourceType"] == "Parameters"
    assert status["meta"]["profile"] == [f"{BACKPORT}/backport-subscription-status-r4"]
    return status


def test_the_topics_are_served_at_the_one_base(platform: Platform, http: httpx.Client) -> None:
    statement = http.get(f"{base(platform)}/metadata").json()
    listed = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"Subscription", "SubscriptionTopic"} <= listed
    answer = http.get(f"{base(platform)}/SubscriptionTopic")
    assert answer.status_code == 200, answer.text
    topics = {e["resource"]["url"]: e["resource"] for e in answer.json()["entry"]}
    assert set(topics) == {
        f"https://akson.no/fhir/SubscriptionTopic/{name}"
        for name in (
            "document-recorded",
            "result-available",
            "medication-list-changed",
            "critical-information-changed",
        )
    }
    for topic in topics.values():
        assert topic["canFilterBy"][0]["filterParameter"] == "patient"
    one = http.get(f"{base(platform)}/SubscriptionTopic/document-recorded").json()
    assert one["url"] == DOCUMENTS
    assert one["resourceTrigger"][0]["resource"].endswith("/DocumentReference")


def test_a_treating_practitioner_gets_the_handshake_one_signed_id_only_notification_and_heartbeats(
    platform: Platform, http: httpx.Client, subscriber: Subscriber
) -> None:
    case = treated_patient(platform, http)
    secret, endpoint = uuid.uuid4().hex * 2, subscriber.url()
    heartbeat = {
        "extension": [{"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": 5}]
    }
    created = subscribe(
        http, platform, case, subscription(case.patient, endpoint, secret, channel=heartbeat)
    )

    # the handshake, signed; the subscription is then active
    (handshake,) = eventually(lambda: subscriber.at(endpoint, "handshake"), timeout=30)
    assert verified(handshake, secret)
    assert handshake.headers["content-type"].startswith(FHIR)
    when_status(http, platform, case, created["id"], "active")

    # a document recorded for the patient: one notification, id-only, signed
    document = create(
        http, platform, document_reference(case.patient, "Hemmelig notat."), case.journal
    )
    (notification,) = eventually(lambda: subscriber.at(endpoint, "event-notification"), timeout=30)
    assert verified(notification, secret)
    tampered = Received(notification.path, notification.headers, notification.body + b" ")
    assert not verified(tampered, secret)
    assert not verified(notification, "x" * 64)
    bundle = notification.bundle
    assert bundle["type"] == "history"
    status, focus = bundle["entry"]
    parameters = status["resource"]
    assert parameter(parameters, "subscription")["valueReference"]["reference"].endswith(
        f"Subscription/{created['id']}"
    )
    assert parameter(parameters, "topic")["valueCanonical"] == DOCUMENTS
    assert parameter(parameters, "events-since-subscription-start")["valueString"] == "1"
    event = {p["name"]: p for p in parameter(parameters, "notification-event")["part"]}
    assert event["event-number"]["valueString"] == "1"
    assert event["focus"]["valueReference"]["reference"].endswith(
        f"DocumentReference/{document['id']}"
    )
    assert focus["fullUrl"].endswith(f"DocumentReference/{document['id']}")
    assert "resource" not in focus  # id-only: never the content
    assert b"Hemmelig" not in notification.body and case.hpr.encode() not in notification.body

    # $status says the same
    current = status_of(http, platform, case, created["id"])
    assert parameter(current, "status")["valueCode"] == "active"
    assert parameter(current, "type")["valueCode"] == "query-status"
    assert parameter(current, "events-since-subscription-start")["valueString"] == "1"
    reference = parameter(current, "subscription")["valueReference"]["reference"]
    assert reference == f"Subscription/{created['id']}"  # never a service's own address

    # heartbeats follow, signed, every 5 s
    beat = eventually(lambda: subscriber.at(endpoint, "heartbeat"), timeout=20)[0]
    assert verified(beat, secret)
    # exactly one notification for the one document, however the event was delivered
    time.sleep(2)
    assert len(subscriber.at(endpoint, "event-notification")) == 1

    # the subscription is the practitioner's own: found in its search, nobody else's
    mine = http.get(f"{base(platform)}/Subscription", headers=case.fhir).json()
    assert created["id"] in {e["resource"]["id"] for e in mine["entry"]}
    stranger = gp_headers(platform, str(next(_hpr)), unit="unit-x", audience="gateway")
    theirs = http.get(f"{base(platform)}/Subscription", headers=stranger).json()
    assert created["id"] not in {e["resource"]["id"] for e in theirs.get("entry", [])}
    for path in (f"Subscription/{created['id']}", f"Subscription/{created['id']}/$status"):
        refused = http.get(f"{base(platform)}/{path}", headers=stranger)
        assert refused.status_code == 404, path
    assert (
        http.delete(f"{base(platform)}/Subscription/{created['id']}", headers=stranger).status_code
        == 404
    )

    # deleted by its owner: gone, and no more notifications
    assert (
        http.delete(f"{base(platform)}/Subscription/{created['id']}", headers=case.fhir).status_code
        == 204
    )
    assert (
        http.get(f"{base(platform)}/Subscription/{created['id']}", headers=case.fhir).status_code
        == 404
    )


def test_each_topic_notifies_its_own_resource_only(
    platform: Platform, http: httpx.Client, subscriber: Subscriber
) -> None:
    """The medication list and critical information topics (journal.record.changed), each
    told only of its own resource type; the document topic is told of none of them."""
    case = treated_patient(platform, http)
    secret = uuid.uuid4().hex * 2
    endpoints = {}
    for name, resource in (
        ("medication-list-changed", "MedicationStatement"),
        ("critical-information-changed", "AllergyIntolerance"),
        ("document-recorded", "DocumentReference"),
    ):
        endpoints[resource] = subscriber.url()
        topic = f"https://akson.no/fhir/SubscriptionTopic/{name}"
        body = subscription(case.patient, endpoints[resource], secret, topic, resource)
        created = subscribe(http, platform, case, body)
        when_status(http, platform, case, created["id"], "active")
    statement = create(http, platform, medication(case.patient, "C10AA05"), case.journal)
    critical = create(http, platform, allergy(case.patient), case.journal)
    for resource, recorded in (
        ("MedicationStatement", statement),
        ("AllergyIntolerance", critical),
    ):
        url = endpoints[resource]
        (notification,) = eventually(
            lambda: subscriber.at(url, "event-notification"),  # noqa: B023 (awaited here)
            timeout=30,
        )
        assert verified(notification, secret)
        status, focus = notification.bundle["entry"]
        assert focus["fullUrl"].endswith(f"{resource}/{recorded['id']}")
        assert "resource" not in focus
    time.sleep(2)
    assert subscriber.at(endpoints["DocumentReference"], "event-notification") == []
    for resource in ("MedicationStatement", "AllergyIntolerance"):
        assert len(subscriber.at(endpoints[resource], "event-notification")) == 1


def test_no_notification_for_a_patient_who_blocked_the_practitioner_and_the_refusal_is_logged(
    platform: Platform, http: httpx.Client, subscriber: Subscriber
) -> None:
    case = treated_patient(platform, http)
    secret, endpoint = uuid.uuid4().hex * 2, subscriber.url()
    created = subscribe(http, platform, case, subscription(case.patient, endpoint, secret))
    when_status(http, platform, case, created["id"], "active")

    # the patient blocks the subscribing practitioner AFTER it subscribed
    citizen = platform.token("consent", subject=case.patient, kind="citizen")
    answer = http.post(
        f"{platform.url('consent')}/directives",
        json=block(case.patient, practitioner=case.hpr),
        headers={"authorization": f"Bearer {citizen}"},
    )
    assert answer.status_code == 201, answer.text
    eventually(
        lambda: (platform.db("messaging").patients.find_one({"_id": case.patient}) or {}).get(
            "directives"
        ),
        timeout=30,
    )
    time.sleep(1.5)  # messaging's projection cache (1 s) holds the facts before the block

    # another practitioner treating the patient records a document
    colleague = str(next(_hpr))
    platform.relate(case.patient, hpr=colleague)
    document = create(
        http, platform, document_reference(case.patient), gp_headers(platform, colleague)
    )

    notifications = platform.db("messaging").subscription_notifications
    refused = eventually(
        lambda: notifications.find_one(
            {"subscription_id": created["id"], "focus_id": document["id"], "status": "refused"}
        ),
        timeout=30,
    )
    assert refused["last_error_code"] == "policy_refused" and refused["event_number"] is None
    assert subscriber.at(endpoint, "event-notification") == []

    # the refusal is a decision in the audit log: a read of that document, for the subscriber,
    # denied because the patient blocked them
    def logged_refusal() -> Any:
        for decision in platform.db("audit").decisions.find({"patient": case.patient}):
            record = decision["record"]
            if (
                record["input"]["resource"].get("id") == document["id"]
                and record["input"]["subject"].get("hpr_number") == case.hpr
                and record["result"]["allow"] is False
            ):
                return record
        return None

    record = eventually(logged_refusal, timeout=30)
    assert "blocked" in record["result"]["reasons"]
    assert record["input"]["action"] == "read"
    # nothing was counted as an event of the subscription
    kept = platform.db("messaging").subscriptions.find_one({"_id": created["id"]})
    assert kept["events_since_start"] == 0 and kept["status"] == "active"
    # the subscription names a patient the practitioner may no longer read: it reads like an
    # unknown one now, but its owner can still end it
    gone = http.get(f"{base(platform)}/Subscription/{created['id']}/$status", headers=case.fhir)
    assert gone.status_code == 404
    ended = http.delete(f"{base(platform)}/Subscription/{created['id']}", headers=case.fhir)
    assert ended.status_code == 204


def test_a_failing_endpoint_is_retried_and_the_subscription_ends_in_error(
    platform: Platform, http: httpx.Client, subscriber: Subscriber
) -> None:
    case = treated_patient(platform, http)
    secret, endpoint = uuid.uuid4().hex * 2, subscriber.url("fail")
    created = subscribe(http, platform, case, subscription(case.patient, endpoint, secret))
    errored = when_status(http, platform, case, created["id"], "error")
    assert "handshake failed" in errored["error"]
    # the stack's messaging timings: 6 attempts with backoff, then the dead letter
    attempts = subscriber.at(endpoint, "handshake")
    assert len(attempts) == 6
    assert all(verified(a, secret) for a in attempts)
    handshake = platform.db("messaging").subscription_notifications.find_one(
        {"subscription_id": created["id"], "type": "handshake"}
    )
    assert handshake["status"] == "dead_lettered" and handshake["attempts"] == 6
    assert handshake["last_error_code"] == "peer_http_500"
    gaps = [
        (b["at"] - a["at"]).total_seconds()
        for a, b in zip(handshake["history"][1:], handshake["history"][2:], strict=False)
    ]
    assert len(gaps) == 5 and gaps[0] >= 0.4 and gaps[-1] >= 3.5  # backing off
    current = status_of(http, platform, case, created["id"])
    assert parameter(current, "status")["valueCode"] == "error"


def test_an_endpoint_failing_after_the_handshake_dead_letters_the_notification(
    platform: Platform, http: httpx.Client, subscriber: Subscriber
) -> None:
    case = treated_patient(platform, http)
    secret, endpoint = uuid.uuid4().hex * 2, subscriber.url("flaky")
    created = subscribe(http, platform, case, subscription(case.patient, endpoint, secret))
    when_status(http, platform, case, created["id"], "active")
    document = create(http, platform, document_reference(case.patient), case.journal)
    errored = when_status(http, platform, case, created["id"], "error")
    assert errored["error"] == "notification failed: peer_http_500"
    attempts = subscriber.at(endpoint, "event-notification")
    assert len(attempts) == 6 and all(verified(a, secret) for a in attempts)
    # every attempt the same event (number 1), each decided again before it was sent
    numbers = {
        part["valueString"]
        for a in attempts
        for part in parameter(a.bundle["entry"][0]["resource"], "notification-event")["part"]
        if part["name"] == "event-number"
    }
    assert numbers == {"1"}
    dead = platform.db("messaging").subscription_notifications.find_one(
        {"subscription_id": created["id"], "focus_id": document["id"]}
    )
    assert dead["status"] == "dead_lettered" and dead["attempts"] == 6
    current = status_of(http, platform, case, created["id"])
    assert parameter(current, "status")["valueCode"] == "error"
    # $events still tells what happened
    events = http.get(
        f"{base(platform)}/Subscription/{created['id']}/$events", headers=case.fhir
    ).json()
    focus = parameter(events["entry"][0]["resource"], "notification-event")["part"]
    assert any(
        p["name"] == "focus" and p["valueReference"]["reference"].endswith(document["id"])
        for p in focus
    )


def test_hostile_subscriptions_are_refused_with_an_operation_outcome(
    platform: Platform, http: httpx.Client, subscriber: Subscriber
) -> None:
    case = treated_patient(platform, http)
    secret, endpoint = uuid.uuid4().hex * 2, subscriber.url()
    good = subscription(case.patient, endpoint, secret)
    sidecar = platform.endpoints["services"]["messaging"]["dapr_http"]

    def with_channel(**changes: Any) -> dict[str, Any]:
        return {**good, "channel": {**good["channel"], **changes}}

    def with_filter(value: str) -> dict[str, Any]:
        return {
            **good,
            "_criteria": {
                "extension": [{"url": f"{BACKPORT}/backport-filter-criteria", "valueString": value}]
            },
        }

    cases: list[tuple[str, Any, int]] = [
        ("unknown topic", {**good, "criteria": "https://akson.no/fhir/SubscriptionTopic/x"}, 422),
        ("query criteria", {**good, "criteria": f"DocumentReference?patient={case.patient}"}, 422),
        ("no filter", {**good, "_criteria": {}}, 422),
        ("other type", with_filter(f"Observation?patient={case.patient}"), 422),
        ("bad patient", with_filter("DocumentReference?patient=Patient/1' OR 1=1"), 422),
        ("no secret", {**good, "extension": []}, 422),
        ("private endpoint", with_channel(endpoint="https://10.0.0.7/hook"), 422),
        ("metadata endpoint", with_channel(endpoint="http://169.254.169.254/latest"), 422),
        ("the sidecar", with_channel(endpoint=f"{sidecar}/v1.0/invoke/journal/method/x"), 422),
        ("a platform app", with_channel(endpoint=f"{platform.url('journal')}/fhir/R4"), 422),
        ("redis", with_channel(endpoint=f"http://{platform.endpoints['redis']['address']}/"), 422),
        ("not a url", with_channel(endpoint="javascript:alert(1)"), 422),
        (
            "full resource",
            with_channel(
                _payload={
                    "extension": [
                        {
                            "url": f"{BACKPORT}/backport-payload-content",
                            "valueCode": "full-resource",
                        }
                    ]
                }
            ),
            422,
        ),
        ("websocket", with_channel(type="websocket"), 422),
        ("not a subscription", {"resourceType": "Patient"}, 422),
        ("a list", [good], 422),
        ("not valid FHIR", {**good, "channel": "rest-hook"}, 422),
        ("huge", {**good, "reason": "x" * 200_000}, 413),
    ]
    for name, body, expected in cases:
        answer = http.post(
            f"{base(platform)}/Subscription",
            content=json.dumps(body),
            headers={**case.fhir, "content-type": FHIR},
        )
        assert answer.status_code == expected, (name, answer.status_code, answer.text)
        assert answer.json()["resourceType"] == "OperationOutcome", name
        assert case.patient not in answer.text, name  # nothing submitted is echoed
    not_json = http.post(
        f"{base(platform)}/Subscription",
        content=b"{nope",
        headers={**case.fhir, "content-type": FHIR},
    )
    assert not_json.status_code == 400 and not_json.json()["resourceType"] == "OperationOutcome"
    as_xml = http.post(
        f"{base(platform)}/Subscription",
        content=b"<x/>",
        headers={**case.fhir, "content-type": "application/xml"},
    )
    assert as_xml.status_code == 415
    anonymous = http.post(
        f"{base(platform)}/Subscription", content=json.dumps(good), headers={"content-type": FHIR}
    )
    assert anonymous.status_code == 401
    # a practitioner without a care relation may not subscribe for the patient
    stranger = gp_headers(platform, str(next(_hpr)), unit="unit-x", audience="gateway")
    refused = http.post(
        f"{base(platform)}/Subscription",
        content=json.dumps(good),
        headers={**stranger, "content-type": FHIR},
    )
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    for path in ("Subscription/nope", "Subscription/nope/$status", "SubscriptionTopic/nope"):
        assert http.get(f"{base(platform)}/{path}", headers=case.fhir).status_code == 404, path
    # nothing was stored for any of these, and nothing reached the endpoint
    assert platform.db("messaging").subscriptions.count_documents({"patient": case.patient}) == 0
    assert subscriber.at(endpoint) == []
