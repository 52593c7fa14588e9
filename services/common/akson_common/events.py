"""The event catalogue and the pub/sub plumbing (CloudEvents 1.0 through the Dapr sidecar).

Every topic and its versioned payload model is declared here, once. Payloads carry identifiers
and the minimum facts consumers need, never document bodies.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

import httpx
from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI, Request
from opentelemetry import propagate
from pydantic import BaseModel, ConfigDict, ValidationError

from akson_common.db import Database, DuplicateKeyError

log = logging.getLogger("akson.events")


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
    means every session of that practitioner must end (the identity service revokes tokens)."""

    hpr_number: str
    status: Literal["active", "suspended", "revoked"]
    professions: tuple[str, ...]
    units: tuple[str, ...]


class OrganisationChangedV1(EventPayload):
    """An organisation or unit changed: identifiers and addressing facts, no names."""

    org_number: str
    parent: str | None = None
    municipality: str
    service_type: str | None = None
    her_id: str | None = None
    on_platform: bool


class AccountDisabledV1(EventPayload):
    """The identity service disabled an account (a practitioner suspended or revoked): every
    service refuses that subject's tokens issued up to ``disabled_at``."""

    subject: str
    disabled_at: datetime
    reason: Literal["suspended", "revoked"]


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

CATALOGUE: dict[str, Topic[Any]] = {
    t.name: t
    for t in (
        PERSON_CHANGED,
        CARE_RELATION_CHANGED,
        PRACTITIONER_CHANGED,
        ORGANISATION_CHANGED,
        ACCOUNT_DISABLED,
    )
}


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


class EventPublisher:
    """Publishes through the sidecar, keeping our envelope (and so our event id) intact."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        dapr_http_endpoint: str,
        pubsub: str,
        dapr_api_token: str = "",
    ) -> None:
        self.client = client
        self.base = f"{dapr_http_endpoint}/v1.0/publish/{pubsub}"
        self.headers = {"content-type": "application/cloudevents+json"}
        if dapr_api_token:
            self.headers["dapr-api-token"] = dapr_api_token

    async def publish(self, envelope: dict[str, Any]) -> None:
        # partitionKey keeps one patient's events in order on brokers that partition.
        response = await self.client.post(
            f"{self.base}/{envelope['topic']}",
            json=envelope,
            headers=self.headers,
            params={"metadata.partitionKey": envelope["subject"]},
        )
        response.raise_for_status()


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


class Subscriptions:
    """Idempotent subscriptions: each CloudEvent id is applied at most once per consumer."""

    def __init__(
        self, app: FastAPI, database: Database, pubsub: str, app_api_token: str = ""
    ) -> None:
        self.dapr = DaprApp(app)
        self.database = database
        self.pubsub = pubsub
        self.app_api_token = app_api_token
        self.processed = database.collection("processed_events")

    def on(self, topic: Topic[P]) -> Callable[[Handler[P]], Handler[P]]:
        def register(handler: Handler[P]) -> Handler[P]:
            async def receive(request: Request) -> dict[str, str]:
                outcome = await self._deliver(topic, handler, request)
                return {"status": outcome.value}

            receive.__name__ = f"on_{topic.name.replace('.', '_')}"
            self.dapr.subscribe(
                pubsub=self.pubsub,
                topic=topic.name,
                route=f"/events/{topic.name}",
                dead_letter_topic=topic.dead_letter,
            )(receive)
            return handler

        return register

    async def _deliver(self, topic: Topic[P], handler: Handler[P], request: Request) -> Outcome:
        if self.app_api_token and request.headers.get("dapr-api-token") != self.app_api_token:
            log.warning(
                "event refused: missing or wrong app API token", extra={"topic": topic.name}
            )
            return Outcome.DROP
        try:
            envelope = await request.json()
            event_id = str(envelope["id"])
            payload = topic.payload.model_validate(envelope.get("data"))
        except (ValueError, KeyError, TypeError, ValidationError):
            # An invalid event never becomes valid by retrying: drop it to the dead-letter topic.
            log.warning("invalid event dropped", extra={"topic": topic.name})
            return Outcome.DROP
        key = f"{topic.name}:{event_id}"
        if await self.processed.find_one({"_id": key}) is not None:
            log.info("duplicate event ignored", extra={"topic": topic.name, "event_id": event_id})
            return Outcome.SUCCESS
        delivery = Delivery(
            event_id, str(envelope.get("source", "")), str(envelope.get("subject", ""))
        )
        try:
            outcome = await handler(payload, delivery)
        except Exception:
            log.exception("event handler failed", extra={"topic": topic.name, "event_id": event_id})
            return Outcome.RETRY
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
    import json
    import sys

    json.dump(asyncapi_document(), sys.stdout, indent=2)
