"""Topic-based Subscriptions on R4 (the Subscriptions R5 Backport IG): what a subscriber sends,
what is kept, what is answered and what a notification looks like.

A subscription (R4 ``Subscription``, profile ``backport-subscription``):

- ``criteria``: the canonical URL of one of our topics (:mod:`messaging.topics`);
- ``_criteria.extension`` ``backport-filter-criteria``: exactly one filter,
  ``<the topic's resource>?patient=Patient/<national id>`` (``patient=<national id>`` too);
- ``channel.type`` ``rest-hook`` with ``channel.endpoint``: https, or — in development only —
  http(s) to the loopback interface (see :func:`endpoint_problem`); ``channel.payload``
  ``application/fhir+json``; ``channel._payload.extension`` ``backport-payload-content``:
  ``id-only`` (the default) or ``empty``. ``full-resource`` is refused (422): a notification
  never carries clinical content, the subscriber reads the resource with its own token;
- ``channel.extension`` ``backport-heartbeat-period`` (seconds) and ``backport-timeout``
  (seconds, the subscriber's endpoint must answer within it);
- ``extension`` :data:`SECRET_URL` (valueString, 32 to 256 characters): the secret every
  notification is signed with. Required; never answered back.

**Signature.** Each notification's body is signed with HMAC-SHA256 keyed with that secret:
header ``X-Akson-Signature: sha256=<hex digest of the exact body bytes>``. A subscriber
recomputes it over the body it received and compares in constant time; the Bundle's ``id``
and ``timestamp`` let it refuse a replay.

**Notifications** are R4 backport notification Bundles (``type`` history), first entry the
subscription status as a ``Parameters`` (profile ``backport-subscription-status-r4``: the R4
form of R4B's SubscriptionStatus) with ``subscription``, ``topic``, ``status``, ``type``
(``handshake``, ``heartbeat``, ``event-notification``), ``events-since-subscription-start`` and,
for an event, ``notification-event`` (``event-number``, ``timestamp``, ``focus``); an
``id-only`` event also has an entry naming the resource (``fullUrl`` and ``request``), never
its content.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.subscription import Subscription
from pydantic import BaseModel, Field, ValidationError

from akson_common.errors import Unprocessable
from akson_common.fhir import FHIR_JSON
from akson_common.identifiers import is_national_id
from akson_common.queue import SendState
from messaging.topics import TOPICS, Topic

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
PROFILE = f"{BACKPORT}/backport-subscription"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/backport-subscription-notification-r4"
FILTER_URL = f"{BACKPORT}/backport-filter-criteria"
CONTENT_URL = f"{BACKPORT}/backport-payload-content"
HEARTBEAT_URL = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT_URL = f"{BACKPORT}/backport-timeout"
SECRET_URL = "https://akson.no/fhir/StructureDefinition/subscription-signing-secret"
SIGNATURE_HEADER = "X-Akson-Signature"
PAYLOADS = frozenset({FHIR_JSON, "application/json"})
MIN_SECRET, MAX_SECRET = 32, 256
MAX_ENDPOINT = 2048

SubscriptionState = Literal["requested", "active", "error", "off"]
Content = Literal["empty", "id-only"]
NotificationType = Literal["handshake", "heartbeat", "event-notification"]
NotificationState = Literal["queued", "delivered", "sent", "dead_lettered", "refused", "cancelled"]


class StoredSubscription(BaseModel):
    """A subscription as messaging keeps it; ``owner`` is the subscriber's principal as its
    token said (the whole model, so fields identity adds ride along), never the token."""

    id: str
    topic: str
    resource_type: str
    patient: str
    endpoint: str
    content: Content
    heartbeat_seconds: int | None = None
    timeout_seconds: int
    signing_secret: str
    owner: dict[str, Any]
    owner_key: str
    reason: str
    end: datetime | None = None
    status: SubscriptionState
    error: str | None = None
    events_since_start: int = 0
    next_heartbeat_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class NotificationChange(BaseModel):
    status: NotificationState
    at: datetime
    attempts: int
    error_code: str | None = None


class Notification(SendState):
    """One notification on its way to a subscriber (the queue item the send worker takes).

    An event notification names the resource and the facts the policy decides on (never its
    content); its ``event_number`` is given at the first attempt the policy allows, so a
    refused event uses no number."""

    id: str
    subscription_id: str
    type: NotificationType
    focus_type: str | None = None
    focus_id: str | None = None
    focus_version: int | None = None
    patient: str | None = None
    category: str | None = None
    sensitivity: str | None = None
    withheld_from_patient: bool | None = None
    unit: str | None = None
    organisation: str | None = None
    municipality: str | None = None
    author: str | None = None
    event_at: datetime | None = None
    event_number: int | None = None
    status: NotificationState
    history: list[NotificationChange] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Limits:
    min_heartbeat_seconds: int
    max_heartbeat_seconds: int
    max_timeout_seconds: int


@dataclass(frozen=True)
class SubscriptionRequest:
    """What a valid Subscription asks for."""

    topic: Topic
    patient: str
    endpoint: str
    content: Content
    heartbeat_seconds: int | None
    timeout_seconds: int
    signing_secret: str
    reason: str
    end: datetime | None


def _invalid(message: str, location: str) -> Unprocessable:
    return Unprocessable(message, errors=[{"loc": location.split("."), "msg": message}])


def _extensions(element: Any, url: str) -> list[dict[str, Any]]:
    found = element.get("extension") if isinstance(element, dict) else None
    return [e for e in found or [] if isinstance(e, dict) and e.get("url") == url]


def _one_value(element: Any, url: str, key: str, location: str) -> Any:
    found = _extensions(element, url)
    if len(found) > 1:
        raise _invalid(f"at most one {url.rsplit('/', 1)[-1]} extension", location)
    return found[0].get(key) if found else None


def _patient_filter(raw: dict[str, Any], topic: Topic) -> str:
    filters = _extensions(raw.get("_criteria"), FILTER_URL)
    location = "_criteria.extension"
    if len(filters) != 1 or not isinstance(filters[0].get("valueString"), str):
        raise _invalid(
            f"exactly one filter criteria: {topic.resource}?patient=Patient/<id>", location
        )
    text = str(filters[0]["valueString"])
    resource, mark, query = text.partition("?")
    if not mark or resource != topic.resource:
        raise _invalid(f"the filter is on {topic.resource} for this topic", location)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _invalid("the filter is not a search query", location) from None
    if len(pairs) != 1 or pairs[0][0] != "patient":
        raise _invalid("the only filter (and a required one) is patient", location)
    patient = pairs[0][1].removeprefix("Patient/")
    if not is_national_id(patient):
        raise _invalid("patient is not a valid patient id", location)
    return patient


def _unsigned(value: Any, location: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{location.rsplit('.', 1)[-1]} must be from {low} to {high}", location)
    return value


def parse_subscription(raw: Any, limits: Limits, now: datetime) -> SubscriptionRequest:
    """Read a Subscription a subscriber sent; raise a 422 saying what is wrong (never echoing
    values)."""
    if not isinstance(raw, dict) or raw.get("resourceType") != "Subscription":
        raise _invalid("the body is not a Subscription", "resourceType")
    try:
        model = Subscription.model_validate(raw)
    except ValidationError as error:
        raise Unprocessable(
            "the Subscription is not valid FHIR",
            errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()[:10]],
        ) from None
    except (ValueError, TypeError):  # what a model's own validator may raise unwrapped
        raise Unprocessable("the Subscription is not valid FHIR") from None
    if model.status not in ("requested", "active"):
        raise _invalid("status: a new subscription is requested", "status")
    topic = TOPICS.get(model.criteria or "")
    if topic is None:
        raise _invalid(
            "criteria: not a topic this server offers (see SubscriptionTopic)", "criteria"
        )
    channel = raw.get("channel") or {}
    if model.channel.type != "rest-hook":
        raise _invalid("channel.type: only rest-hook is offered", "channel.type")
    if not model.channel.endpoint:
        raise _invalid("channel.endpoint is required", "channel.endpoint")
    if model.channel.header:
        raise _invalid(
            "channel.header is not supported (notifications are signed)", "channel.header"
        )
    if model.channel.payload is not None and model.channel.payload not in PAYLOADS:
        raise _invalid(f"channel.payload: only {FHIR_JSON}", "channel.payload")
    content = _one_value(channel.get("_payload"), CONTENT_URL, "valueCode", "channel._payload")
    if content == "full-resource":
        raise _invalid(
            "full-resource is not offered: notifications are id-only or empty", "channel._payload"
        )
    if content not in (None, "id-only", "empty"):
        raise _invalid("payload content: id-only or empty", "channel._payload")
    heartbeat = _one_value(channel, HEARTBEAT_URL, "valueUnsignedInt", "channel.extension")
    timeout = _one_value(channel, TIMEOUT_URL, "valueUnsignedInt", "channel.extension")
    secret = _one_value(raw, SECRET_URL, "valueString", "extension")
    if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise _invalid(
            f"a signing secret ({MIN_SECRET} to {MAX_SECRET} characters) is required in the "
            f"extension {SECRET_URL}",
            "extension",
        )
    end = model.end
    if end is not None and (end.tzinfo is None or end <= now):
        raise _invalid("end must be an instant in the future", "end")
    return SubscriptionRequest(
        topic=topic,
        patient=_patient_filter(raw, topic),
        endpoint=str(model.channel.endpoint),
        content="empty" if content == "empty" else "id-only",
        heartbeat_seconds=None
        if heartbeat is None
        else _unsigned(
            heartbeat,
            "channel.extension.heartbeatPeriod",
            limits.min_heartbeat_seconds,
            limits.max_heartbeat_seconds,
        ),
        timeout_seconds=limits.max_timeout_seconds
        if timeout is None
        else _unsigned(timeout, "channel.extension.timeout", 1, limits.max_timeout_seconds),
        signing_secret=secret,
        reason=str(model.reason or "")[:1000],
        end=end,
    )


# -- the endpoint: no request forgery against the platform ----------------------------------


def _address_problem(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    development: bool,
    refused_ports: frozenset[int],
) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        if not development:
            return "a loopback endpoint is only allowed in development"
        if port in refused_ports:
            return "the endpoint is one of the platform's own ports"
        return None
    if (
        address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        return "the endpoint is not a public address"
    return None


async def endpoint_problem(
    url: str, *, development: bool, refused_ports: frozenset[int]
) -> str | None:
    """Why a rest-hook endpoint may not be called, or None.

    https to a public address; in development also http(s) to the loopback interface (the
    subscriber a developer runs), except the platform's own ports there (its sidecar, OPA).
    Private, link-local (cloud metadata), multicast and reserved addresses are refused always,
    and so is a host name that resolves to any of them (checked again before every attempt,
    as a name may resolve differently later); no credentials in the URL, no redirects followed.
    """
    if len(url) > MAX_ENDPOINT:
        return "the endpoint URL is too long"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the endpoint is not a URL"
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        return "the endpoint must be an https URL"
    if parts.username is not None or parts.password is not None:
        return "the endpoint URL may not carry credentials"
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await _resolve(host, port)
        if not addresses:
            return "the endpoint's host name does not resolve"
    for address in addresses:
        problem = _address_problem(address, port, development, refused_ports)
        if problem is not None:
            return problem
    if parts.scheme == "http" and not all(a.is_loopback for a in addresses):
        return "the endpoint must be an https URL (http only to loopback in development)"
    return None


async def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found = []
    for info in infos:
        try:
            found.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        except ValueError:
            continue
    return found


# -- what is answered and sent --------------------------------------------------------------


def instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reference(base: str, path: str) -> str:
    return f"{base.rstrip('/')}/{path}" if base else path


def subscription_resource(subscription: StoredSubscription) -> dict[str, Any]:
    """The subscription as an R4 Subscription (backport profile); never its secret."""
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": subscription.endpoint,
        "payload": FHIR_JSON,
        "_payload": {"extension": [{"url": CONTENT_URL, "valueCode": subscription.content}]},
        "extension": [{"url": TIMEOUT_URL, "valueUnsignedInt": subscription.timeout_seconds}],
    }
    if subscription.heartbeat_seconds is not None:
        channel["extension"].insert(
            0, {"url": HEARTBEAT_URL, "valueUnsignedInt": subscription.heartbeat_seconds}
        )
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": subscription.id,
        "meta": {"profile": [PROFILE], "lastUpdated": instant(subscription.updated_at)},
        "status": subscription.status,
        "reason": subscription.reason or "(none given)",
        "criteria": subscription.topic,
        "_criteria": {
            "extension": [
                {
                    "url": FILTER_URL,
                    "valueString": f"{subscription.resource_type}?patient=Patient/"
                    f"{subscription.patient}",
                }
            ]
        },
        "channel": channel,
    }
    if subscription.end is not None:
        resource["end"] = instant(subscription.end)
    if subscription.error:
        resource["error"] = subscription.error
    return Subscription.model_validate(resource).model_dump(mode="json", exclude_none=True)


def status_parameters(
    subscription: StoredSubscription,
    kind: NotificationType | Literal["query-status", "query-event"],
    base: str,
    events: list[Notification] | None = None,
) -> dict[str, Any]:
    """The subscription's status as the R4 backport's Parameters."""
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": reference(base, f"Subscription/{subscription.id}")},
        },
        {"name": "topic", "valueCanonical": subscription.topic},
        {"name": "status", "valueCode": subscription.status},
        {"name": "type", "valueCode": kind},
        {
            "name": "events-since-subscription-start",
            "valueString": str(subscription.events_since_start),
        },
    ]
    for event in events or []:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.event_number)}
        ]
        if event.event_at is not None:
            parts.append({"name": "timestamp", "valueInstant": instant(event.event_at)})
        if subscription.content == "id-only" and event.focus_type and event.focus_id:
            parts.append(
                {
                    "name": "focus",
                    "valueReference": {
                        "reference": reference(base, f"{event.focus_type}/{event.focus_id}")
                    },
                }
            )
        parameters.append({"name": "notification-event", "part": parts})
    if subscription.error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": subscription.error}})
    return {
        "resourceType": "Parameters",
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def notification_bundle(
    subscription: StoredSubscription, notification: Notification, base: str, at: datetime
) -> dict[str, Any]:
    """The Bundle a rest-hook endpoint receives for ``notification``."""
    events = [notification] if notification.type == "event-notification" else []
    status = status_parameters(subscription, notification.type, base, events)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{notification.id}",
            "resource": status,
            "request": {
                "method": "GET",
                "url": reference(base, f"Subscription/{subscription.id}/$status"),
            },
            "response": {"status": "200"},
        }
    ]
    if events and subscription.content == "id-only":
        focus = f"{notification.focus_type}/{notification.focus_id}"
        created = notification.focus_version in (None, 1)
        entries.append(
            {
                "fullUrl": reference(base, focus),
                "request": {
                    "method": "POST" if created else "PUT",
                    "url": notification.focus_type if created else focus,
                },
                "response": {"status": "201" if created else "200"},
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "id": notification.id,
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": instant(at),
        "entry": entries,
    }
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Akson-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
