"""The event catalogue and the pub/sub plumbing (CloudEvents 1.0 through the Dapr sidecar).

Every topic and its versioned payload model is declared here, once. Payloads carry identifiers
and the minimum facts consumers need, never document bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

import httpx
from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI, Request
from opentelemetry import propagate
from pydantic import BaseModel, ConfigDict, ValidationError
from pymongo.errors import ConnectionFailure

from akson_common.db import Database, DuplicateKeyError, insert_new
from akson_common.guard import (
    MAX_DEPTH,
    HostileInput,
    checked_json,
    hostile,
    json_depth_exceeds,
    parse_json,
)

log = logging.getLogger("akson.events")
# where the sidecar delivers events (``/events/<topic>``)
EVENT_ROUTES = "/events/"


class EventPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PersonChangedV1(EventPayload):
    """A person's registry facts changed. No name, no address: consumers don't need them."""

    national_id: str
    municipality: str
    address_protection: Literal["none", "fortrolig", "strengt_fortrolig"]
    deceased: bool


class CareRelationChangedV1(EventPayload):
    """A care relation between a patient and a practitioner or unit started, changed or ended."""

    relation_id: str
    patient: str
    kind: str
    practitioner: str | None = None
    unit: str | None = None
    period_start: date
    period_end: date | None = None


class PractitionerChangedV1(EventPayload):
    """A practitioner's authorisation or employment changed; ``status`` other than ``active``
    means every session of that practitioner must end (the identity service revokes tokens).

    ``name`` (given and family name) is public register data (the health personnel register,
    HPR, publishes it), not health data: the citizen's access log shows who accessed a record by
    name. No other personal data (birth date, address, contact details) is carried."""

    hpr_number: str
    status: Literal["active", "suspended", "revoked"]
    professions: tuple[str, ...]
    units: tuple[str, ...]
    name: str | None = None


class OrganisationChangedV1(EventPayload):
    """An organisation or unit changed: identifiers, addressing facts and its public name (the
    register's name of a business, shown in citizens' access logs)."""

    org_number: str
    parent: str | None = None
    municipality: str
    service_type: str | None = None
    her_id: str | None = None
    on_platform: bool
    name: str | None = None


class AccountDisabledV1(EventPayload):
    """The identity service disabled an account (a practitioner suspended or revoked): every
    service refuses that subject's tokens issued up to ``disabled_at``."""

    subject: str
    disabled_at: datetime
    reason: Literal["suspended", "revoked"]


DirectiveKind = Literal["block", "reservation", "consent", "device"]
ReservationScope = Literal["other_municipalities", "nav", "child_welfare"]


class ConsentDirectiveChangedV1(EventPayload):
    """A citizen's directive was recorded, changed or withdrawn (``status``). ``version`` grows
    with every change of one directive, so a consumer can ignore a stale, reordered delivery.

    - ``block``: ``practitioner`` (HPR number), ``unit`` or ``organisation`` may not access the
      patient's record;
    - ``reservation``: the ``categories`` (empty = every category) are not shared outside
      ``scope`` (other municipalities, NAV, child welfare);
    - ``consent``: ``recipient_organisation`` may read ``categories`` for ``purpose``;
    - ``device``: the welfare-technology ``device`` (its registry id) may record into the
      patient's record (welfare accepts its messages only while this holds).
    The period bounds every kind. No free text (the reason given stays in consent).
    """

    directive_id: str
    version: int
    patient: str
    kind: DirectiveKind
    status: Literal["active", "withdrawn"]
    practitioner: str | None = None
    unit: str | None = None
    organisation: str | None = None
    categories: tuple[str, ...] = ()
    scope: ReservationScope | None = None
    recipient_organisation: str | None = None
    purpose: str | None = None
    device: str | None = None
    period_start: date
    period_end: date | None = None


class DocumentRecordedV1(EventPayload):
    """A journal document was recorded (or a new version of it). Codes only: never text."""

    document_id: str
    version: int
    patient: str
    category: str
    type_code: str | None = None
    author: str | None = None
    unit: str | None = None
    organisation: str | None = None
    municipality: str | None = None
    recorded_at: datetime
    # what a read of it is decided on besides the above (an older event has neither: a
    # consumer deciding for someone counts them against the reader)
    sensitivity: Literal["normal", "sensitive"] | None = None
    withheld_from_patient: bool | None = None


class RecordChangedV1(EventPayload):
    """A result, a medication list entry or critical information was recorded or changed in
    the journal (a new version, also entered-in-error). Codes and identifiers only, like
    ``DocumentRecordedV1``: what a consumer needs to decide a read of it for someone."""

    resource_type: Literal["DiagnosticReport", "MedicationStatement", "AllergyIntolerance"]
    resource_id: str
    version: int
    patient: str
    category: str
    status: str | None = None
    type_code: str | None = None
    author: str | None = None
    unit: str | None = None
    organisation: str | None = None
    municipality: str | None = None
    sensitivity: Literal["normal", "sensitive"] | None = None
    withheld_from_patient: bool | None = None
    recorded_at: datetime


class VisitCompletedV1(EventPayload):
    """A visit (Encounter) was completed or corrected: what payroll needs and nothing else —
    no patient, no diagnosis, no note. A correction carries the same ``encounter_id`` and a
    higher ``version``."""

    encounter_id: str
    version: int
    performer: str
    unit: str
    organisation: str | None = None
    municipality: str | None = None
    visit_type: str
    start: datetime
    end: datetime
    status: Literal["finished", "entered-in-error"] = "finished"


class SupplyLine(EventPayload):
    item: str
    quantity: float


class SuppliesUsedV1(EventPayload):
    """Supplies used in care, per unit: what logistics needs (no patient, no diagnosis)."""

    usage_id: str
    unit: str
    organisation: str | None = None
    municipality: str | None = None
    used_at: datetime
    items: tuple[SupplyLine, ...]


ExportRecipient = Literal["payroll", "logistics"]


class ExportExportedV1(EventPayload):
    """An export file (payroll timesheet lines, logistics replenishment orders) went out through
    the ``exports`` binding after the minimisation policy (``akson.export``) allowed it."""

    export_id: str
    recipient: ExportRecipient
    file_name: str
    day: date
    unit: str
    records: int
    decision_id: str | None = None
    at: datetime


class ExportRefusedV1(EventPayload):
    """An alert: the minimisation policy refused an export; it was dead-lettered, never sent.
    Carries the policy's reason codes, not the payload (nor its unit: the offending value
    may be anywhere in it)."""

    export_id: str
    recipient: ExportRecipient
    records: int
    reasons: tuple[str, ...]
    decision_id: str | None = None
    at: datetime


class EmergencyAccessV1(EventPayload):
    """Break-glass access was granted: the patient is notified and the access reviewed."""

    decision_id: str | None
    patient: str
    practitioner: str
    unit: str | None = None
    organisation: str | None = None
    reason_code: str
    resource_type: str
    category: str | None = None
    at: datetime


OutboundStatus = Literal[
    "queued", "sent", "delivered", "receipted_ok", "receipted_error", "dead_lettered"
]


class MessageStatusChangedV1(EventPayload):
    """An outbound electronic message changed status (``messaging.message.*``): identifiers,
    status and codes only — never the message's content or the peer's free-text answer.

    ``error_code`` says why an attempt failed or a receipt was not OK (``transport_unavailable``,
    ``peer_http_503``, ``apprec_rejected``...); ``in_reply_to`` is set on application receipts
    (the inbound message they answer)."""

    message_id: str
    kind: str
    status: OutboundStatus
    patient: str | None = None
    document_id: str | None = None
    recipient_her_id: str
    attempts: int = 0
    error_code: str | None = None
    in_reply_to: str | None = None


class MessageReceivedV1(EventPayload):
    """An inbound message was received, validated and stored (once, whatever the number of
    deliveries): the journal fetches it from messaging by ``message_id``."""

    message_id: str
    kind: str
    patient: str
    sender_her_id: str
    document_id: str | None = None
    received_at: datetime


class EmergencyAccessReviewedV1(EventPayload):
    """A break-glass access was reviewed. Identifiers and the verdict only; the reviewer's
    comment stays in audit (it may describe the situation)."""

    review_id: str
    decision_id: str | None
    patient: str
    practitioner: str
    organisation: str | None = None
    outcome: Literal["justified", "not_justified"]
    reviewer: str
    reviewed_at: datetime


class EnforcedDecision(EventPayload):
    decision_id: str
    allow: bool
    at: datetime


class DecisionsEnforcedV1(EventPayload):
    """The decision ids an enforcement point asked for and enforced, batched (double recording:
    audit reconciles them with OPA's decision log and reports any id seen on one side only)."""

    service: str
    decisions: tuple[EnforcedDecision, ...]


class DecisionGapV1(EventPayload):
    """A decision seen on one side of the double recording only, after the grace period
    (``audit.alert.gap``), or such a gap filled later (``audit.alert.gap.resolved``: the missing
    side arrived late). Identifiers and codes only.

    ``side``: ``enforced_only`` — an enforcement point enforced it but OPA's decision log never
    delivered it (a lost log entry); ``logged_only`` — OPA logged it but no enforcement point
    reported enforcing it."""

    decision_id: str
    side: Literal["enforced_only", "logged_only"]
    service: str | None = None
    allow: bool | None = None
    status: Literal["open", "resolved"]
    detected_at: datetime
    resolved_at: datetime | None = None


class DecisionQuarantinedV1(EventPayload):
    """An alert (``audit.alert.quarantined``): a decision-log entry could not be stored as OPA
    sent it (a control character, a number beyond 64 bits...). It is chained escaped and
    flagged, and kept as received in audit's quarantine. ``reason`` names the location only."""

    decision_id: str
    reason: str
    quarantined_at: datetime


WelfareRule = Literal["missed_dose", "out_of_range", "alarm"]


class WelfareAlertRaisedV1(EventPayload):
    """A welfare-technology rule fired for a patient: for the responsible home-care ``unit``
    (organisation number), within seconds of the device's message.

    ``rule``: a dispenser's missed dose, a measurement outside the patient's thresholds, an
    alarm (fall, door, bed, safety alarm); ``code`` (``code_system``) what was measured or
    dispensed or alarmed; ``value``, ``low``, ``high`` and ``value_unit`` the numbers the rule
    compared (a measurement's only). Identifiers and numbers: no free text."""

    alert_id: str
    patient: str
    device: str
    unit: str | None = None
    rule: WelfareRule
    code: str | None = None
    code_system: str | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    value_unit: str | None = None
    message_id: str
    occurred_at: datetime | None = None


P = TypeVar("P", bound=EventPayload)


@dataclass(frozen=True)
class Topic(Generic[P]):
    name: str
    payload: type[P]
    version: int

    @property
    def event_type(self) -> str:
        return f"{self.name}.v{self.version}"

    @property
    def dead_letter(self) -> str:
        return f"{self.name}.deadletter"


PERSON_CHANGED = Topic("masterdata.person.changed", PersonChangedV1, 1)
CARE_RELATION_CHANGED = Topic("masterdata.care_relation.changed", CareRelationChangedV1, 1)
PRACTITIONER_CHANGED = Topic("masterdata.practitioner.changed", PractitionerChangedV1, 1)
ORGANISATION_CHANGED = Topic("masterdata.organisation.changed", OrganisationChangedV1, 1)
ACCOUNT_DISABLED = Topic("identity.account.disabled", AccountDisabledV1, 1)
CONSENT_DIRECTIVE_CHANGED = Topic("consent.directive.changed", ConsentDirectiveChangedV1, 1)
DOCUMENT_RECORDED = Topic("journal.document.recorded", DocumentRecordedV1, 1)
RECORD_CHANGED = Topic("journal.record.changed", RecordChangedV1, 1)
VISIT_COMPLETED = Topic("journal.visit.completed", VisitCompletedV1, 1)
SUPPLIES_USED = Topic("journal.supplies.used", SuppliesUsedV1, 1)
EMERGENCY_ACCESS = Topic("journal.access.emergency", EmergencyAccessV1, 1)
DECISIONS_ENFORCED = Topic("policy.decision.enforced", DecisionsEnforcedV1, 1)
EMERGENCY_ACCESS_REVIEWED = Topic("audit.emergency_access.reviewed", EmergencyAccessReviewedV1, 1)
DECISION_GAP = Topic("audit.alert.gap", DecisionGapV1, 1)
DECISION_GAP_RESOLVED = Topic("audit.alert.gap.resolved", DecisionGapV1, 1)
DECISION_QUARANTINED = Topic("audit.alert.quarantined", DecisionQuarantinedV1, 1)
EXPORT_EXPORTED = Topic("integrations.export.exported", ExportExportedV1, 1)
EXPORT_REFUSED = Topic("integrations.export.refused", ExportRefusedV1, 1)
MESSAGE_QUEUED = Topic("messaging.message.queued", MessageStatusChangedV1, 1)
MESSAGE_RETRY_SCHEDULED = Topic("messaging.message.retry_scheduled", MessageStatusChangedV1, 1)
MESSAGE_SENT = Topic("messaging.message.sent", MessageStatusChangedV1, 1)
MESSAGE_DELIVERED = Topic("messaging.message.delivered", MessageStatusChangedV1, 1)
MESSAGE_RECEIPTED = Topic("messaging.message.receipted", MessageStatusChangedV1, 1)
MESSAGE_DEAD_LETTERED = Topic("messaging.message.dead_lettered", MessageStatusChangedV1, 1)
MESSAGE_RECEIVED = Topic("messaging.message.received", MessageReceivedV1, 1)
WELFARE_ALERT_RAISED = Topic("welfare.alert.raised", WelfareAlertRaisedV1, 1)

CATALOGUE: dict[str, Topic[Any]] = {
    t.name: t
    for t in (
        PERSON_CHANGED,
        CARE_RELATION_CHANGED,
        PRACTITIONER_CHANGED,
        ORGANISATION_CHANGED,
        ACCOUNT_DISABLED,
        CONSENT_DIRECTIVE_CHANGED,
        DOCUMENT_RECORDED,
        RECORD_CHANGED,
        VISIT_COMPLETED,
        SUPPLIES_USED,
        EMERGENCY_ACCESS,
        DECISIONS_ENFORCED,
        EMERGENCY_ACCESS_REVIEWED,
        DECISION_GAP,
        DECISION_GAP_RESOLVED,
        DECISION_QUARANTINED,
        EXPORT_EXPORTED,
        EXPORT_REFUSED,
        MESSAGE_QUEUED,
        MESSAGE_RETRY_SCHEDULED,
        MESSAGE_SENT,
        MESSAGE_DELIVERED,
        MESSAGE_RECEIPTED,
        MESSAGE_DEAD_LETTERED,
        MESSAGE_RECEIVED,
        WELFARE_ALERT_RAISED,
    )
}


@dataclass(frozen=True)
class ServiceEvents:
    """What a service publishes and consumes: each service declares one in its ``events.py``
    and hands it to ``create_service``, which holds the wiring to it. An app that subscribes to
    a topic it does not declare, or declares one it does not subscribe to, is not built; an
    event of an undeclared topic is refused by the outbox before anything is written.

    The shared library's own topics count too: a service that asks the policy publishes
    :data:`DECISIONS_ENFORCED` (its enforcement log), and every service consumes
    :data:`ACCOUNT_DISABLED` (its token denylist)."""

    publishes: tuple[Topic[Any], ...] = ()
    consumes: tuple[Topic[Any], ...] = ()

    def published(self, envelopes: Sequence[Mapping[str, Any]]) -> None:
        """Raise :class:`UndeclaredTopic` for an envelope whose topic is not declared."""
        declared = {topic.name for topic in self.publishes}
        for envelope in envelopes:
            if envelope.get("topic") not in declared:
                raise UndeclaredTopic(f"publishes {envelope.get('topic')!r}, not in its events.py")

    def subscribed(self, topics: Sequence[str]) -> None:
        """Raise :class:`UndeclaredTopic` unless ``topics`` are exactly those consumed."""
        declared = {topic.name for topic in self.consumes}
        if undeclared := set(topics) - declared:
            raise UndeclaredTopic(f"subscribes to {sorted(undeclared)}, not in its events.py")
        if unused := declared - set(topics):
            raise UndeclaredTopic(f"declares {sorted(unused)} consumed, but subscribes to none")


class UndeclaredTopic(RuntimeError):
    """A service's wiring and its ``events.py`` disagree (a programming error)."""


def cloud_event(topic: Topic[P], payload: P, *, source: str, subject: str) -> dict[str, Any]:
    """A CloudEvents 1.0 envelope; its id is what consumers dedupe on.

    The current trace context goes into the envelope (CloudEvents distributed-tracing
    extension), so an event published later by the outbox relay stays in the trace of the
    request that caused it.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    tracing = {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}
    return {
        **tracing,
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"akson/{source}",
        "type": topic.event_type,
        "topic": topic.name,
        "subject": subject,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": payload.model_dump(mode="json"),
    }


def partition_key(subject: str, secret: str) -> str:
    """The broker's partition key for ``subject``: a keyed hash (HMAC-SHA256, 128 bits), so the
    same patient always lands on the same partition (their events stay ordered) while the key
    that travels in the publish URL and the broker's metadata is no national id."""
    digest = hmac.new(secret.encode(), subject.encode(), hashlib.sha256).hexdigest()
    return digest[:32]


class EventPublisher:
    """Publishes through the sidecar, keeping our envelope (and so our event id) intact."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        dapr_http_endpoint: str,
        pubsub: str,
        dapr_api_token: str = "",
        partition_key_secret: str = "",
    ) -> None:
        self.client = client
        self.partition_key_secret = partition_key_secret
        self.base = f"{dapr_http_endpoint}/v1.0/publish/{pubsub}"
        self.bulk_base = f"{dapr_http_endpoint}/v1.0-alpha1/publish/bulk/{pubsub}"
        self.headers = {"content-type": "application/cloudevents+json"}
        self.bulk_headers = {"content-type": "application/json"}
        if dapr_api_token:
            self.headers["dapr-api-token"] = dapr_api_token
            self.bulk_headers["dapr-api-token"] = dapr_api_token

    async def publish(self, envelope: dict[str, Any]) -> None:
        # partitionKey keeps one patient's events in order on brokers that partition.
        key = partition_key(str(envelope["subject"]), self.partition_key_secret)
        response = await self.client.post(
            f"{self.base}/{envelope['topic']}",
            json=envelope,
            headers=self.headers,
            params={"metadata.partitionKey": key},
        )
        response.raise_for_status()

    async def publish_bulk(self, topic: str, envelopes: Sequence[dict[str, Any]]) -> set[str]:
        """Publish ``envelopes`` of one topic in one call to the sidecar (Dapr's bulk publish
        API); return the ids of the events it did not accept (everything else is on the
        broker). A bulk has no order: give it at most one event per subject.

        Raises when the sidecar answered with no per-event result (it is away, or refused the
        request as a whole)."""
        if not envelopes:
            return set()
        entries = [
            {
                "entryId": str(envelope["id"]),
                # the sidecar keeps an envelope's trace only when it names one as ``traceid``
                "event": {"traceid": envelope["traceparent"], **envelope}
                if "traceparent" in envelope and "traceid" not in envelope
                else envelope,
                "contentType": "application/cloudevents+json",
                "metadata": {
                    "partitionKey": partition_key(
                        str(envelope["subject"]), self.partition_key_secret
                    )
                },
            }
            for envelope in envelopes
        ]
        response = await self.client.post(
            f"{self.bulk_base}/{topic}", json=entries, headers=self.bulk_headers
        )
        if response.is_success:
            return set()
        try:
            failed = response.json().get("failedEntries")
        except ValueError:
            failed = None
        if not failed:
            response.raise_for_status()
        return {str(entry.get("entryId")) for entry in failed}


class Outcome(StrEnum):
    """What a handler tells Dapr: done, try again later, or give up (to the dead-letter topic)."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


@dataclass(frozen=True)
class Delivery:
    event_id: str
    source: str
    subject: str


Handler = Callable[[P, Delivery], Awaitable[Outcome]]
# A whole bulk delivery at once (one write per batch instead of one per event): the events of
# one subject come in delivery order, and the handler answers one outcome per event.
BatchHandler = Callable[[Sequence[tuple[P, Delivery]]], Awaitable[Sequence[Outcome]]]


# Failures that say nothing about the event (the database or a peer is away for a while):
# retried without limit. Anything else is counted and the event dead-lettered after
# ``max_attempts``: a poison message must never hold up everything behind it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    httpx.TransportError,
    TimeoutError,
)
MAX_ATTEMPTS = 3
_ATTEMPTS_KEPT = 10_000
# Bulk subscribe (Dapr's default bulk subscriber over Redis Streams): at most this many events
# per delivery, or what arrived within the wait. A batch is never larger than the pubsub
# component's ``concurrency`` (each of its workers holds one message until the batch is done).
BULK_MAX_MESSAGES = 200
BULK_MAX_AWAIT_MS = 50
# events of different subjects handled at once within a batch that has no batch handler
BATCH_CONCURRENCY = 16
# How long dedupe markers are kept. Redis redelivers an unacknowledged event after
# ``processingTimeout`` (15 s), and the sidecar retries a failing delivery until it succeeds
# (every 5 s, charts/akson/files/resiliency.yaml): a copy can come while the first is
# still being retried, never after it was answered SUCCESS and acknowledged. The outbox
# publishes an event again only while it is still pending, i.e. until its service is back. A
# week covers every one of these by far; older markers are pruned (FerretDB v1 has no TTL
# indexes: ``expireAfterSeconds`` is "not implemented").
MARKER_RETENTION = timedelta(days=7)
MARKER_PRUNE_SECONDS = 3600.0


class Subscriptions:
    """Idempotent subscriptions: each CloudEvent id is applied at most once per consumer.

    An event that cannot be processed goes to its topic's dead-letter topic (the handler answers
    DROP, which the sidecar forwards there): at once when it is invalid (not its topic's schema,
    or text the input guard would refuse), after ``max_attempts`` failed deliveries when the
    handler raises anything that is not a :data:`TRANSIENT_ERRORS`. Each drop is recorded in
    ``dead_letters`` (topic, event id, reason; never the payload)."""

    def __init__(
        self,
        app: FastAPI,
        database: Database,
        pubsub: str,
        app_api_token: str = "",
        *,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.dapr = DaprApp(app)
        self.database = database
        self.pubsub = pubsub
        self.app_api_token = app_api_token
        self.max_attempts = max_attempts
        self.processed = database.collection("processed_events")
        # an event being applied: written before its handler runs (see _deliver_batch)
        self.claims = database.collection("event_claims")
        self.dead_letters = database.collection("dead_letters")
        # failed deliveries per event (in memory: bounded, and it works with the database away)
        self._attempts: OrderedDict[str, int] = OrderedDict()
        self._in_flight: set[str] = set()
        self._pruner: asyncio.Task[None] | None = None
        # the topics subscribed to, in order (``ServiceEvents.subscribed`` checks them)
        self.topics: list[str] = []

    def on(
        self, topic: Topic[P], *, batch: BatchHandler[P] | None = None
    ) -> Callable[[Handler[P]], Handler[P]]:
        """Register ``handler`` for ``topic``. The subscription is a bulk subscription: the
        sidecar delivers up to :data:`BULK_MAX_MESSAGES` events at once and takes one status
        per event. ``batch``, when given, applies a whole delivery at once; ``handler`` is
        still the one that applies a single event (and a batch whose batch handler failed,
        event by event, so that a poison event is isolated)."""

        def register(handler: Handler[P]) -> Handler[P]:
            if topic.name in self.topics:
                raise UndeclaredTopic(f"{topic.name} has a handler already")
            self.topics.append(topic.name)

            async def receive(request: Request) -> dict[str, Any]:
                raw = await request.body()
                entries = _bulk_entries(raw)
                if self.app_api_token and request.headers.get("dapr-api-token") != (
                    self.app_api_token
                ):
                    log.warning(
                        "event refused: missing or wrong app API token",
                        extra={"topic": topic.name},
                    )
                    if entries is None:
                        return {"status": Outcome.DROP.value}
                    return {
                        "statuses": [_status(entry_id, Outcome.DROP) for entry_id, _ in entries]
                    }
                if entries is None:
                    outcome = await self._deliver(topic, handler, raw)
                    return {"status": outcome.value}
                statuses = await self._deliver_bulk(topic, handler, batch, entries)
                return {"statuses": statuses}

            receive.__name__ = f"on_{topic.name.replace('.', '_')}"
            self.dapr.subscribe(
                pubsub=self.pubsub,
                topic=topic.name,
                route=f"{EVENT_ROUTES}{topic.name}",
                dead_letter_topic=topic.dead_letter,
            )(receive)
            subscription: dict[str, Any] = self.dapr._subscriptions[-1]
            subscription["bulkSubscribe"] = {
                "enabled": True,
                "maxMessagesCount": BULK_MAX_MESSAGES,
                "maxAwaitDurationMs": BULK_MAX_AWAIT_MS,
            }
            return handler

        return register

    async def _valid(
        self, topic: Topic[P], raw: bytes | dict[str, Any]
    ) -> tuple[str, dict[str, Any], P] | None:
        """The event's id, envelope and payload; None (recorded as dead-lettered) when the event
        is invalid: it never becomes valid by retrying. ``raw``: the event as JSON text, or
        parsed already with its bulk delivery (held to the same checks)."""
        try:
            if isinstance(raw, dict):
                envelope = checked_json(raw, location="event")
            else:
                envelope = parse_json(raw, location="event")
            if not isinstance(envelope, dict):
                raise TypeError("not an object")
            event_id = str(envelope["id"])
            payload = topic.payload.model_validate(envelope.get("data"))
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            reason = error.location if isinstance(error, HostileInput) else "invalid"
            log.warning("invalid event dropped", extra={"topic": topic.name, "reason": reason})
            await self._dead_lettered(topic, _event_id(raw), f"invalid event ({reason})")
            return None
        return event_id, envelope, payload

    async def _deliver(self, topic: Topic[P], handler: Handler[P], raw: bytes) -> Outcome:
        valid = await self._valid(topic, raw)
        if valid is None:
            return Outcome.DROP
        event_id, envelope, payload = valid
        key = f"{topic.name}:{event_id}"
        if key in self._in_flight:
            # the same event delivered twice at once (the sidecar delivers concurrently): the
            # check below would let both through; the copy comes back when the first is done
            return Outcome.RETRY
        self._in_flight.add(key)
        try:
            return await self._deliver_once(topic, handler, key, event_id, envelope, payload)
        finally:
            self._in_flight.discard(key)

    async def _deliver_once(
        self,
        topic: Topic[P],
        handler: Handler[P],
        key: str,
        event_id: str,
        envelope: dict[str, Any],
        payload: P,
    ) -> Outcome:
        if await self.processed.find_one({"_id": key}) is not None:
            log.info("duplicate event ignored", extra={"topic": topic.name, "event_id": event_id})
            return Outcome.SUCCESS
        delivery = Delivery(
            event_id, str(envelope.get("source", "")), str(envelope.get("subject", ""))
        )
        outcome = await self._apply(topic, handler, key, delivery, payload)
        log.info(
            "event handled",
            extra={"topic": topic.name, "event_id": event_id, "outcome": outcome.value},
        )
        if outcome is Outcome.SUCCESS:
            try:
                await self.processed.insert_one(
                    {"_id": key, "topic": topic.name, "at": datetime.now(UTC)}
                )
            except DuplicateKeyError:
                pass
        return outcome

    async def _deliver_bulk(
        self,
        topic: Topic[P],
        handler: Handler[P],
        batch: BatchHandler[P] | None,
        entries: list[tuple[str, bytes | dict[str, Any]]],
    ) -> list[dict[str, str]]:
        """One status per entry of a bulk delivery (``entryId`` and ``status``)."""
        outcomes: dict[str, Outcome] = {}
        todo: list[tuple[str, str, Delivery, P]] = []  # entry id, key, delivery, payload
        keys: set[str] = set()
        for entry_id, raw in entries:
            valid = await self._valid(topic, raw)
            if valid is None:
                outcomes[entry_id] = Outcome.DROP  # the sidecar forwards it to the dead letters
                continue
            event_id, envelope, payload = valid
            key = f"{topic.name}:{event_id}"
            if key in self._in_flight or key in keys:
                outcomes[entry_id] = Outcome.RETRY  # the same event twice at once
                continue
            keys.add(key)
            delivery = Delivery(
                event_id, str(envelope.get("source", "")), str(envelope.get("subject", ""))
            )
            todo.append((entry_id, key, delivery, payload))
        self._in_flight.update(keys)
        try:
            outcomes.update(await self._deliver_batch(topic, handler, batch, todo))
        finally:
            self._in_flight.difference_update(keys)
        return [_status(entry_id, outcomes.get(entry_id, Outcome.RETRY)) for entry_id, _ in entries]

    async def _deliver_batch(
        self,
        topic: Topic[P],
        handler: Handler[P],
        batch: BatchHandler[P] | None,
        todo: list[tuple[str, str, Delivery, P]],
    ) -> dict[str, Outcome]:
        """Apply the new events of a batch at most once each, with batched dedupe markers.

        FerretDB v1 pushes no ``$in`` down to PostgreSQL (every ``_id in [...]`` scans the
        collection), so duplicates are found by inserting: a claim per event in one
        ``insert_many`` before the handlers run, and a processed marker per applied event in
        one ``insert_many`` after. Only an event whose claim exists already (a redelivery, or a
        crash after the claim) costs a lookup of its processed marker."""
        if not todo:
            return {}
        now = datetime.now(UTC)
        try:
            claimed_before = await insert_new(
                self.claims, [{"_id": key, "topic": topic.name, "at": now} for _, key, _, _ in todo]
            )
        except TRANSIENT_ERRORS:
            return {entry_id: Outcome.RETRY for entry_id, _, _, _ in todo}
        outcomes: dict[str, Outcome] = {}
        fresh: list[tuple[str, str, Delivery, P]] = []
        for item in todo:
            entry_id, key, delivery, _ = item
            if key in claimed_before and await self.processed.find_one({"_id": key}) is not None:
                log.info(
                    "duplicate event ignored",
                    extra={"topic": topic.name, "event_id": delivery.event_id},
                )
                outcomes[entry_id] = Outcome.SUCCESS
            else:
                fresh.append(item)
        applied: dict[str, Outcome] | None = None
        if batch is not None and fresh:
            try:
                answers = await batch([(payload, delivery) for _, _, delivery, payload in fresh])
                applied = {item[0]: answer for item, answer in zip(fresh, answers, strict=True)}
            except TRANSIENT_ERRORS:
                log.warning("event batch failed (transient): retried", extra={"topic": topic.name})
                applied = {item[0]: Outcome.RETRY for item in fresh}
            except Exception:
                # one event of the batch may be poison: apply them one by one, each counted
                log.exception("event batch failed: applied one by one", extra={"topic": topic.name})
        if applied is None:
            applied = await self._one_by_one(topic, handler, fresh)
        outcomes.update(applied)
        done = [item for item in fresh if applied.get(item[0]) is Outcome.SUCCESS]
        try:
            await insert_new(
                self.processed,
                [{"_id": key, "topic": topic.name, "at": now} for _, key, _, _ in done],
            )
        except Exception as error:
            # applied and answered SUCCESS, so not redelivered: failing here instead would
            # have the sidecar deliver them again and apply them twice
            log.warning(
                "dedupe markers not written",
                extra={"topic": topic.name, "error": type(error).__name__},
            )
        log.info(
            "event batch handled",
            extra={"topic": topic.name, "events": len(todo), "applied": len(done)},
        )
        return outcomes

    async def _one_by_one(
        self, topic: Topic[P], handler: Handler[P], fresh: list[tuple[str, str, Delivery, P]]
    ) -> dict[str, Outcome]:
        """Each event through ``handler``: one subject's events in order, subjects at once."""
        limit = asyncio.Semaphore(BATCH_CONCURRENCY)
        outcomes: dict[str, Outcome] = {}

        async def in_order(items: list[tuple[str, str, Delivery, P]]) -> None:
            async with limit:
                for entry_id, key, delivery, payload in items:
                    outcomes[entry_id] = await self._apply(topic, handler, key, delivery, payload)

        by_subject: dict[str, list[tuple[str, str, Delivery, P]]] = {}
        for item in fresh:
            by_subject.setdefault(item[2].subject, []).append(item)
        await asyncio.gather(*(in_order(items) for items in by_subject.values()))
        return outcomes

    async def _apply(
        self, topic: Topic[P], handler: Handler[P], key: str, delivery: Delivery, payload: P
    ) -> Outcome:
        """One event through its handler: transient failures retried, others counted and the
        event dead-lettered after ``max_attempts``."""
        event_id = delivery.event_id
        try:
            outcome = await handler(payload, delivery)
        except TRANSIENT_ERRORS:
            log.warning(
                "event handler failed (transient): retried",
                extra={"topic": topic.name, "event_id": event_id},
            )
            return Outcome.RETRY
        except Exception as error:
            attempts = self._failed(key)
            log.exception(
                "event handler failed",
                extra={"topic": topic.name, "event_id": event_id, "attempts": attempts},
            )
            if attempts < self.max_attempts:
                return Outcome.RETRY
            self._attempts.pop(key, None)
            await self._dead_lettered(
                topic, event_id, f"handler failed {attempts} times ({type(error).__name__})"
            )
            return Outcome.DROP
        self._attempts.pop(key, None)
        return outcome

    async def prune(self, retention: timedelta = MARKER_RETENTION) -> int:
        """Remove dedupe markers and claims older than ``retention``; how many went."""
        cutoff = datetime.now(UTC) - retention
        removed = 0
        for markers in (self.processed, self.claims):
            removed += (await markers.delete_many({"at": {"$lt": cutoff}})).deleted_count
        return removed

    async def _keep_pruned(self, every_seconds: float) -> None:
        while True:
            await asyncio.sleep(every_seconds)
            try:
                removed = await self.prune()
                if removed:
                    log.info("dedupe markers pruned", extra={"removed": removed})
            except Exception as error:
                log.warning("dedupe markers not pruned", extra={"error": type(error).__name__})

    def start(self, prune_every_seconds: float = MARKER_PRUNE_SECONDS) -> None:
        """Prune the dedupe markers every ``prune_every_seconds`` (a background task)."""
        self._pruner = asyncio.create_task(
            self._keep_pruned(prune_every_seconds), name="dedupe-marker-pruner"
        )

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner

    def _failed(self, key: str) -> int:
        attempts = self._attempts.pop(key, 0) + 1
        self._attempts[key] = attempts
        while len(self._attempts) > _ATTEMPTS_KEPT:
            self._attempts.popitem(last=False)
        return attempts

    async def _dead_lettered(self, topic: Topic[Any], event_id: str | None, reason: str) -> None:
        log.warning(
            "event dead-lettered",
            extra={"topic": topic.name, "event_id": event_id, "dead_letter": topic.dead_letter},
        )
        try:
            await self.dead_letters.insert_one(
                {
                    "topic": topic.name,
                    "event_id": event_id,
                    "reason": reason,
                    "at": datetime.now(UTC),
                }
            )
        except Exception:  # best effort: the dead-letter topic has the event either way
            log.warning("dead letter not recorded", extra={"topic": topic.name})


def _status(entry_id: str, outcome: Outcome) -> dict[str, str]:
    return {"entryId": entry_id, "status": outcome.value}


def _bulk_entries(raw: bytes) -> list[tuple[str, bytes | dict[str, Any]]] | None:
    """A bulk delivery's entries (entry id, the event: parsed with the body, or JSON text),
    or None when ``raw`` is a single event. Each event is held to the input guard's checks on
    its own (:meth:`Subscriptions._valid`). An entry without an id gets no status (the sidecar
    retries it)."""
    if json_depth_exceeds(raw, MAX_DEPTH):
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("entries"), list):
        return None
    entries: list[tuple[str, bytes | dict[str, Any]]] = []
    for entry in body["entries"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("entryId"), str):
            continue
        event = entry.get("event")
        if isinstance(event, dict):
            entries.append((entry["entryId"], event))
        else:  # JSON text (or not an object: refused as invalid by the guard's parser)
            text = event.encode() if isinstance(event, str) else json.dumps(event).encode()
            entries.append((entry["entryId"], text))
    return entries


def _event_id(raw: bytes | dict[str, Any]) -> str | None:
    """The id of an event refused as invalid, when it has a plain one (for the dead letters)."""
    if isinstance(raw, dict):
        event_id = raw.get("id")
        return event_id if isinstance(event_id, str) and _plain_id(event_id) else None
    if json_depth_exceeds(raw, MAX_DEPTH):
        return None
    try:
        envelope = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    event_id = envelope.get("id") if isinstance(envelope, dict) else None
    if isinstance(event_id, str) and _plain_id(event_id):
        return event_id
    return None


def _plain_id(event_id: str) -> bool:
    return len(event_id) <= 100 and not hostile(event_id)


def asyncapi_document() -> dict[str, Any]:
    """The catalogue as an AsyncAPI 3.0 document (`python -m akson_common.events`)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in CATALOGUE.values():
        key = topic.name.replace(".", "_")
        channels[key] = {
            "address": topic.name,
            "messages": {
                key: {
                    "name": topic.event_type,
                    "contentType": "application/cloudevents+json",
                    "payload": topic.payload.model_json_schema(),
                }
            },
            "description": f"dead letters go to {topic.dead_letter}",
        }
        operations[f"publish_{key}"] = {"action": "send", "channel": {"$ref": f"#/channels/{key}"}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Akson events", "version": "1"},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
    }


if __name__ == "__main__":
    import sys

    json.dump(asyncapi_document(), sys.stdout, indent=2)
