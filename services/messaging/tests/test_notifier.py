"""One attempt of a subscription notification, without servers: the policy decides every event
notification for the subscriber before anything is sent; a refused event uses no event number;
what is sent is signed; a subscription gone or a policy engine away are outcomes, not errors."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any, cast

import httpx

from akson_common.auth import Principal
from akson_common.policy import Decision, PolicyContext, PolicyUnavailable, ResourceRef
from messaging.notifier import GONE, REFUSED, Notifier
from messaging.settings import MessagingSettings
from messaging.subscriptions import Notification, StoredSubscription

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "k" * 40
OWNER = Principal(
    id="hpr:9144900", kind="practitioner", hpr_number="9144900", profession="LE", unit="u1"
)


def subscription(**changes: Any) -> StoredSubscription:
    values: dict[str, Any] = {
        "id": "sub-1",
        "topic": "https://akson.no/fhir/SubscriptionTopic/document-recorded",
        "resource_type": "DocumentReference",
        "patient": "17058000000",
        "endpoint": "http://127.0.0.1:8765/hook",
        "content": "id-only",
        "timeout_seconds": 5,
        "signing_secret": SECRET,
        "owner": OWNER.model_dump(mode="json"),
        "owner_key": "practitioner:hpr:9144900",
        "reason": "",
        "status": "active",
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
        "focus_id": "doc-1",
        "focus_version": 1,
        "patient": "17058000000",
        "category": "general",
        "sensitivity": "normal",
        "withheld_from_patient": False,
        "event_at": NOW,
        "status": "queued",
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(changes)
    return Notification.model_validate(values)


class Store:
    def __init__(self, found: StoredSubscription | None) -> None:
        self.found = found
        self.numbers: list[tuple[str, int]] = []
        self.counter = 0

    async def get(self, subscription_id: str) -> StoredSubscription | None:
        return self.found

    async def next_event_number(self, subscription_id: str) -> int:
        self.counter += 1
        return self.counter

    async def numbered(self, notification_id: str, number: int) -> None:
        self.numbers.append((notification_id, number))


class Projections:
    async def context(self, patient: str) -> PolicyContext:
        return PolicyContext()


class Pep:
    def __init__(self, decision: Decision | None) -> None:
        self.decision = decision
        self.asked: list[tuple[Principal, str, ResourceRef]] = []

    async def decide(
        self, subject: Principal, action: str, resource: ResourceRef, context: PolicyContext
    ) -> Decision:
        self.asked.append((subject, action, resource))
        if self.decision is None:
            raise PolicyUnavailable()
        return self.decision


def notifier(store: Store, pep: Pep, answer: int = 200) -> tuple[Notifier, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(answer, headers={"location": "http://10.0.0.1/"})

    settings = MessagingSettings(service_name="messaging", environment="development")
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    return (
        Notifier(settings, cast(Any, store), cast(Any, Projections()), cast(Any, pep), http),
        sent,
    )


async def test_a_refused_event_is_decided_for_the_subscriber_and_never_sent() -> None:
    store, pep = Store(subscription()), Pep(Decision(allow=False, reasons=("blocked",)))
    service, sent = notifier(store, pep)
    result = await service.send(event())
    assert (result.outcome, result.error_code, result.reason) == ("permanent", REFUSED, "blocked")
    assert sent == [] and store.numbers == []  # no request, no event number used
    ((subject, action, resource),) = pep.asked
    assert subject == OWNER and action == "read"
    assert (resource.type, resource.id, resource.patient, resource.category) == (
        "DocumentReference",
        "doc-1",
        "17058000000",
        "general",
    )


async def test_an_allowed_event_is_numbered_once_signed_and_sent() -> None:
    store, pep = Store(subscription()), Pep(Decision(allow=True))
    service, sent = notifier(store, pep)
    result = await service.send(event())
    assert result.outcome == "delivered"
    assert store.numbers == [("n-1", 1)]
    (request,) = sent
    expected = hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["x-akson-signature"] == f"sha256={expected}"
    assert request.headers["content-type"] == "application/fhir+json"
    body = json.loads(request.content)
    assert '"event-number"' in request.content.decode() and body["type"] == "history"
    # a retry keeps its number
    again = await service.send(event(event_number=1))
    assert again.outcome == "delivered" and store.numbers == [("n-1", 1)]


async def test_facts_an_old_event_lacks_count_against_the_subscriber() -> None:
    store, pep = Store(subscription()), Pep(Decision(allow=True))
    service, _ = notifier(store, pep)
    await service.send(event(sensitivity=None, withheld_from_patient=None))
    ((_, _, resource),) = pep.asked
    assert resource.sensitivity == "sensitive" and resource.withheld_from_patient is True


async def test_handshakes_and_heartbeats_carry_no_resource_and_need_no_decision() -> None:
    store, pep = Store(subscription(status="requested")), Pep(None)
    service, sent = notifier(store, pep)
    for kind in ("handshake", "heartbeat"):
        result = await service.send(event(type=kind, focus_type=None, focus_id=None))
        assert result.outcome == "delivered"
    assert pep.asked == [] and len(sent) == 2


async def test_no_decision_is_a_retry_a_deleted_subscription_an_end_a_redirect_final() -> None:
    service, sent = notifier(Store(subscription()), Pep(None))
    result = await service.send(event())
    assert (result.outcome, result.error_code) == ("retry", "policy_unavailable") and sent == []
    service, sent = notifier(Store(None), Pep(Decision(allow=True)))
    assert (await service.send(event())).error_code == GONE and sent == []
    service, sent = notifier(Store(subscription()), Pep(Decision(allow=True)), answer=302)
    redirected = await service.send(event())
    assert redirected.outcome == "permanent" and len(sent) == 1  # not followed
    service, sent = notifier(Store(subscription()), Pep(Decision(allow=True)), answer=503)
    assert (await service.send(event())).outcome == "retry"


async def test_an_endpoint_that_became_internal_is_not_called() -> None:
    internal = subscription(endpoint="https://10.0.0.5/hook")
    service, sent = notifier(Store(internal), Pep(Decision(allow=True)))
    result = await service.send(event())
    assert (result.outcome, result.error_code) == ("permanent", "endpoint_refused")
    assert sent == []
