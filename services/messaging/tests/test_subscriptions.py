"""Topic-based subscriptions without servers: what a Subscription may ask, which endpoints may
be called, what a notification looks like and how it is signed, and one attempt's outcome."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.subscriptiontopic import SubscriptionTopic

from akson_common.errors import Unprocessable
from akson_common.identifiers import synthetic_national_id
from messaging.store import attempt_outcome
from messaging.subscriptions import (
    CONTENT_URL,
    FILTER_URL,
    HEARTBEAT_URL,
    SECRET_URL,
    STATUS_PROFILE,
    TIMEOUT_URL,
    Limits,
    Notification,
    StoredSubscription,
    endpoint_problem,
    notification_bundle,
    parse_subscription,
    signature,
    status_parameters,
    subscription_resource,
)
from messaging.topics import TOPICS, topic_resource
from messaging.transport import TransportResult, peer_result

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(min_heartbeat_seconds=5, max_heartbeat_seconds=3600, max_timeout_seconds=10)
PATIENT = synthetic_national_id(datetime(1980, 5, 17).date(), 0)
DOCUMENTS = "https://akson.no/fhir/SubscriptionTopic/document-recorded"
SECRET = "s" * 40


def subscription(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Varsle fastlegen",
        "criteria": DOCUMENTS,
        "_criteria": {
            "extension": [
                {"url": FILTER_URL, "valueString": f"DocumentReference?patient=Patient/{PATIENT}"}
            ]
        },
        "extension": [{"url": SECRET_URL, "valueString": SECRET}],
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://subscriber.example/hook",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": CONTENT_URL, "valueCode": "id-only"}]},
            "extension": [
                {"url": HEARTBEAT_URL, "valueUnsignedInt": 60},
                {"url": TIMEOUT_URL, "valueUnsignedInt": 5},
            ],
        },
    }
    resource.update(changes)
    return resource


def test_a_backport_subscription_is_read_with_its_topic_filter_and_channel() -> None:
    request = parse_subscription(subscription(), LIMITS, NOW)
    assert request.topic.url == DOCUMENTS and request.topic.resource == "DocumentReference"
    assert request.patient == PATIENT
    assert (request.content, request.heartbeat_seconds, request.timeout_seconds) == (
        "id-only",
        60,
        5,
    )
    assert request.signing_secret == SECRET
    bare = subscription()
    bare["channel"] = {"type": "rest-hook", "endpoint": "https://subscriber.example/hook"}
    defaults = parse_subscription(bare, LIMITS, NOW)
    assert (defaults.content, defaults.heartbeat_seconds, defaults.timeout_seconds) == (
        "id-only",
        None,
        10,
    )


def _with_filter(value: str) -> dict[str, Any]:
    return subscription(_criteria={"extension": [{"url": FILTER_URL, "valueString": value}]})


def _channel(**changes: Any) -> dict[str, Any]:
    resource = subscription()
    resource["channel"] = {**resource["channel"], **changes}
    return resource


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Patient"},
        [],
        subscription(criteria="https://akson.no/fhir/SubscriptionTopic/unknown"),
        subscription(criteria="DocumentReference?patient=Patient/1"),  # R4 query-based
        subscription(_criteria={}),
        _with_filter(f"Observation?patient=Patient/{PATIENT}"),
        _with_filter("DocumentReference?patient=Patient/12345678901"),
        _with_filter(f"DocumentReference?patient={PATIENT}&category=general"),
        _with_filter("DocumentReference?category=general"),
        _with_filter("DocumentReference"),
        subscription(extension=[]),
        subscription(extension=[{"url": SECRET_URL, "valueString": "short"}]),
        _channel(type="websocket"),
        _channel(endpoint=None),
        _channel(header=["Authorization: Bearer x"]),
        _channel(payload="application/xml"),
        _channel(_payload={"extension": [{"url": CONTENT_URL, "valueCode": "full-resource"}]}),
        _channel(extension=[{"url": HEARTBEAT_URL, "valueUnsignedInt": 1}]),
        _channel(extension=[{"url": TIMEOUT_URL, "valueUnsignedInt": 600}]),
        subscription(end="2020-01-01T00:00:00Z"),
        subscription(status="bogus"),
    ],
)
def test_a_subscription_it_cannot_honour_is_refused_with_a_reason(resource: Any) -> None:
    with pytest.raises(Unprocessable):
        parse_subscription(resource, LIMITS, NOW)


async def test_endpoints_are_https_to_public_addresses_or_loopback_in_development() -> None:
    async def problem(url: str, development: bool = True) -> str | None:
        return await endpoint_problem(url, development=development, refused_ports=frozenset({3500}))

    assert await problem("https://93.184.216.34/hook") is None
    assert await problem("http://127.0.0.1:8765/hook") is None
    assert await problem("http://localhost:8765/hook") is None
    assert await problem("https://[::1]:8765/hook") is None
    refused = [
        "http://93.184.216.34/hook",  # not https
        "ftp://93.184.216.34/hook",
        "https://10.1.2.3/hook",  # private
        "https://192.168.0.10/hook",
        "https://172.16.0.1/hook",
        "https://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://100.64.0.1/hook",  # shared address space
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "http://127.0.0.1:3500/v1.0/invoke/journal/method/x",  # the platform's own sidecar
        "https://user:pw@93.184.216.34/hook",
        "https://no-such-host.invalid/hook",
        "not a url",
        "https://" + "a" * 3000 + ".example/",
    ]
    for url in refused:
        assert await problem(url) is not None, url
    assert await problem("http://127.0.0.1:8765/hook", development=False) is not None
    assert await problem("https://127.0.0.1:8765/hook", development=False) is not None


def stored(**changes: Any) -> StoredSubscription:
    values: dict[str, Any] = {
        "id": "sub-1",
        "topic": DOCUMENTS,
        "resource_type": "DocumentReference",
        "patient": PATIENT,
        "endpoint": "https://subscriber.example/hook",
        "content": "id-only",
        "heartbeat_seconds": 60,
        "timeout_seconds": 5,
        "signing_secret": SECRET,
        "owner": {"id": "hpr:1", "kind": "practitioner"},
        "owner_key": "practitioner:hpr:1",
        "reason": "Varsle",
        "status": "active",
        "events_since_start": 3,
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(changes)
    return StoredSubscription.model_validate(values)


def event(**changes: Any) -> Notification:
    values: dict[str, Any] = {
        "id": "n-1",
        "subscription_id": "sub-1",
        "type": "event-notification",
        "focus_type": "DocumentReference",
        "focus_id": "doc-9",
        "focus_version": 1,
        "patient": PATIENT,
        "category": "general",
        "event_at": NOW,
        "event_number": 3,
        "status": "queued",
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(changes)
    return Notification.model_validate(values)


def _parameter(parameters: dict[str, Any], name: str) -> Any:
    return next(p for p in parameters["parameter"] if p["name"] == name)


def test_an_event_notification_is_an_id_only_history_bundle_status_first() -> None:
    bundle = notification_bundle(stored(), event(), "https://fhir.example/fhir/R4", NOW)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "history"
    status, focus = bundle["entry"]
    parameters = status["resource"]
    assert parameters["resourceType"] == "Parameters"
    assert parameters["meta"]["profile"] == [STATUS_PROFILE]
    assert _parameter(parameters, "type")["valueCode"] == "event-notification"
    assert _parameter(parameters, "status")["valueCode"] == "active"
    assert _parameter(parameters, "topic")["valueCanonical"] == DOCUMENTS
    assert _parameter(parameters, "events-since-subscription-start")["valueString"] == "3"
    parts = {p["name"]: p for p in _parameter(parameters, "notification-event")["part"]}
    assert parts["event-number"]["valueString"] == "3"
    focus_url = "https://fhir.example/fhir/R4/DocumentReference/doc-9"
    assert parts["focus"]["valueReference"]["reference"] == focus_url
    # id-only: the resource is named, never carried
    assert focus == {
        "fullUrl": focus_url,
        "request": {"method": "POST", "url": "DocumentReference"},
        "response": {"status": "201"},
    }
    assert "resource" not in focus


def test_handshake_heartbeat_and_empty_notifications_name_no_resource() -> None:
    for kind in ("handshake", "heartbeat"):
        bundle = notification_bundle(stored(), event(type=kind), "", NOW)
        (only,) = bundle["entry"]
        assert _parameter(only["resource"], "type")["valueCode"] == kind
        assert all(p["name"] != "notification-event" for p in only["resource"]["parameter"])
    empty = notification_bundle(stored(content="empty"), event(), "", NOW)
    (only,) = empty["entry"]
    parts = _parameter(only["resource"], "notification-event")["part"]
    assert {p["name"] for p in parts} == {"event-number", "timestamp"}


def test_the_signature_is_an_hmac_sha256_of_the_exact_body() -> None:
    body = json.dumps(notification_bundle(stored(), event(), "", NOW)).encode()
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature(SECRET, body) == f"sha256={expected}"
    assert signature(SECRET, body + b" ") != signature(SECRET, body)
    assert signature("t" * 40, body) != signature(SECRET, body)


def test_the_subscription_is_answered_without_its_secret() -> None:
    resource = subscription_resource(stored())
    assert SECRET not in json.dumps(resource)
    assert resource["criteria"] == DOCUMENTS
    filters = resource["_criteria"]["extension"][0]["valueString"]
    assert filters == f"DocumentReference?patient=Patient/{PATIENT}"
    # what is answered can be sent back as a subscription again (with a secret)
    again = parse_subscription(
        {**resource, "extension": [{"url": SECRET_URL, "valueString": SECRET}]}, LIMITS, NOW
    )
    assert again.patient == PATIENT
    query = status_parameters(stored(error="handshake failed"), "query-status", "")
    assert _parameter(query, "type")["valueCode"] == "query-status"
    assert _parameter(query, "error")["valueCodeableConcept"]["text"] == "handshake failed"


def test_every_topic_is_a_valid_subscription_topic_filtered_by_patient() -> None:
    assert len(TOPICS) == 4
    for url, topic in TOPICS.items():
        resource = topic_resource(topic)
        SubscriptionTopic.model_validate(resource)
        assert resource["url"] == url
        assert resource["canFilterBy"][0]["filterParameter"] == "patient"


def test_an_endpoint_that_keeps_failing_is_retried_then_dead_lettered() -> None:
    failing = peer_result(503, b"")
    assert failing.outcome == "retry"
    changes, _ = attempt_outcome(event(attempts=0), failing, NOW, 3, timedelta(seconds=1))
    assert changes["status"] == "queued" and changes["next_attempt_at"] == NOW + timedelta(
        seconds=1
    )
    changes, _ = attempt_outcome(event(attempts=2), failing, NOW, 3, timedelta(seconds=1))
    assert changes["status"] == "dead_lettered"
    assert peer_result(204, b"").outcome == "delivered"
    assert peer_result(302, b"").outcome == "permanent"  # redirects are not followed
    refused = TransportResult("permanent", error_code="policy_refused")
    changes, _ = attempt_outcome(event(), refused, NOW, 3, timedelta(seconds=1))
    assert changes["status"] == "dead_lettered"  # the store settles it as refused instead
