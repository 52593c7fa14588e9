"""Messaging's FHIR API (served at the one FHIR base by the gateway): topic-based subscriptions.

- ``GET /fhir/R4/metadata``: the CapabilityStatement (SubscriptionTopic, Subscription,
  ``$status``, ``$events``);
- ``GET /fhir/R4/SubscriptionTopic[/{id}]``: the topics (public: the platform's catalogue);
- ``POST /fhir/R4/Subscription``: subscribe (see :mod:`messaging.subscriptions` for the shape);
  decided by the policy as a ``search`` of the topic's resources of the filtered patient, for
  the caller; answered 201 ``requested`` (the handshake follows);
- ``GET /fhir/R4/Subscription[/{id}]``, ``.../$status``, ``.../$events``: the caller's own
  subscriptions only (anyone else's reads like an unknown one, 404), each decided as a read;
- ``DELETE /fhir/R4/Subscription/{id}``: the owner ends it (no patient data in the answer, so
  no decision: a subscriber whose access ended can still stop its notifications).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal
from akson_common.errors import BadRequest, NotFound, Problem, UnsupportedMediaType
from akson_common.fhir import FHIR_JSON, capability_statement, fhir_base, resource_capability
from messaging.access import SubscriptionAccess
from messaging.notifier import Notifier, now
from messaging.subscriptions import (
    PROFILE,
    instant,
    reference,
    status_parameters,
    subscription_resource,
)
from messaging.topics import BY_ID, TOPICS, topic_resource

router = APIRouter(tags=["fhir"])
NotifierDep = Annotated[Notifier, Depends(state_dependency("notifier", Notifier))]
Access = Annotated[
    SubscriptionAccess, Depends(state_dependency("subscription_access", SubscriptionAccess))
]
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
# a Subscription is a few hundred bytes; more is refused before it is parsed
MAX_SUBSCRIPTION_BYTES = 64 * 1024
BACKPORT_OPERATIONS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition"


class ContentTooLarge(Problem):
    status, title, type_slug = 413, "Content Too Large", "too-large"


def fhir(resource: dict[str, Any], status_code: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(resource, status_code=status_code, media_type=FHIR_JSON, headers=headers)


def searchset(base: str, entries: list[dict[str, Any]], self_url: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "timestamp": instant(now()),
        "total": len(entries),
        "link": [{"relation": "self", "url": self_url}],
        "entry": entries,
    }


@router.get("/fhir/R4/metadata")
async def capabilities(request: Request) -> JSONResponse:
    """Messaging's CapabilityStatement (the gateway assembles the platform's from it)."""
    topics = resource_capability("SubscriptionTopic", ["read", "search-type"], [("url", "uri")])
    operations = [
        {"name": "status", "definition": f"{BACKPORT_OPERATIONS}/backport-subscription-status"},
        {"name": "events", "definition": f"{BACKPORT_OPERATIONS}/backport-subscription-events"},
    ]
    subscriptions = resource_capability(
        "Subscription",
        ["create", "read", "search-type", "delete"],
        [("status", "token")],
        supportedProfile=[PROFILE],
        operation=operations,
    )
    # the operations at the system level too: the gateway routes an operation by them
    statement = capability_statement(
        "Akson messaging: topic-based subscriptions (Subscriptions R5 Backport on R4; "
        "SubscriptionTopic as fhir.resources' R4B model), rest-hook, id-only, signed",
        fhir_base(request),
        [topics, subscriptions],
        operations,
    )
    return fhir(statement)


# -- topics ---------------------------------------------------------------------------------


@router.get("/fhir/R4/SubscriptionTopic")
async def search_topics(
    request: Request, url: Annotated[str | None, Query(max_length=400)] = None
) -> JSONResponse:
    base = fhir_base(request)
    topics = [t for t in TOPICS.values() if url is None or t.url == url]
    entries = [
        {
            "fullUrl": f"{base}/SubscriptionTopic/{t.id}",
            "resource": topic_resource(t),
            "search": {"mode": "match"},
        }
        for t in topics
    ]
    return fhir(searchset(base, entries, f"{base}/SubscriptionTopic"))


@router.get("/fhir/R4/SubscriptionTopic/{topic_id}")
async def read_topic(topic_id: Id) -> JSONResponse:
    topic = BY_ID.get(topic_id)
    if topic is None:
        raise NotFound("no such subscription topic")
    return fhir(topic_resource(topic))


# -- subscriptions --------------------------------------------------------------------------


@router.post(
    "/fhir/R4/Subscription",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
    },
)
async def create_subscription(
    request: Request, principal: CurrentPrincipal, access: Access
) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (FHIR_JSON, "application/json"):
        raise UnsupportedMediaType(f"send the Subscription as {FHIR_JSON}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_SUBSCRIPTION_BYTES:
        raise ContentTooLarge(f"a Subscription is at most {MAX_SUBSCRIPTION_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_SUBSCRIPTION_BYTES:
        raise ContentTooLarge(f"a Subscription is at most {MAX_SUBSCRIPTION_BYTES} bytes")
    try:
        raw = json.loads(body)
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    subscription, readable = await access.subscribe(principal, raw)
    location = f"{fhir_base(request)}/Subscription/{subscription.id}"
    if not readable:
        # created, but not the writer's to read back: its id is in Location only
        unread = {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "information", "code": "informational", "diagnostics": "created"}
            ],
        }
        return fhir(unread, 201, Location=location)
    return fhir(subscription_resource(subscription), 201, Location=location)


@router.get("/fhir/R4/Subscription")
async def search_subscriptions(
    request: Request,
    principal: CurrentPrincipal,
    access: Access,
    status: Annotated[str | None, Query(pattern=r"^(requested|active|error|off)$")] = None,
    count: Annotated[int, Query(alias="_count", ge=0, le=100)] = 50,
    after: Annotated[str | None, Query(alias="_after", max_length=64)] = None,
) -> JSONResponse:
    """The caller's own subscriptions (each one it may read now)."""
    base = fhir_base(request)
    page = await access.readable(principal, status, max(count, 1), after)
    entries = [
        {
            "fullUrl": f"{base}/Subscription/{subscription.id}",
            "resource": subscription_resource(subscription),
            "search": {"mode": "match"},
        }
        for subscription in page.items
    ]
    bundle = searchset(base, entries if count else [], f"{base}/Subscription")
    if page.next_after is not None:
        url = request.url.include_query_params(_after=page.next_after)
        bundle["link"].append({"relation": "next", "url": f"{base}/Subscription?{url.query}"})
    return fhir(bundle)


@router.get("/fhir/R4/Subscription/{subscription_id}")
async def read_subscription(
    subscription_id: Id, principal: CurrentPrincipal, access: Access
) -> JSONResponse:
    return fhir(subscription_resource(await access.own(principal, subscription_id)))


@router.delete("/fhir/R4/Subscription/{subscription_id}", status_code=204)
async def delete_subscription(
    subscription_id: Id, principal: CurrentPrincipal, access: Access
) -> Response:
    await access.unsubscribe(principal, subscription_id)
    return Response(status_code=204)


@router.get("/fhir/R4/Subscription/{subscription_id}/$status")
async def subscription_status(
    subscription_id: Id,
    request: Request,
    principal: CurrentPrincipal,
    access: Access,
    notifier: NotifierDep,
) -> JSONResponse:
    """The backport's ``$status``: a searchset with the status as its one entry."""
    subscription = await access.own(principal, subscription_id)
    public = notifier.settings.public_fhir_base
    base = public or fhir_base(request)
    # references inside the status as in notifications (the gateway moves only links and
    # fullUrls to its base): under the public base, else relative
    status = status_parameters(subscription, "query-status", public)
    entry = {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": status, "search": {"mode": "match"}}
    return fhir(searchset(base, [entry], f"{base}/Subscription/{subscription_id}/$status"))


@router.get("/fhir/R4/Subscription/{subscription_id}/$events")
async def subscription_events(
    subscription_id: Id,
    request: Request,
    principal: CurrentPrincipal,
    access: Access,
    notifier: NotifierDep,
    since: Annotated[int | None, Query(alias="eventsSinceNumber", ge=1)] = None,
    until: Annotated[int | None, Query(alias="eventsUntilNumber", ge=1)] = None,
) -> JSONResponse:
    """The backport's ``$events``: the notified events in a range (at most 50), id-only, each
    decided again for the caller now (what it may no longer read is left out)."""
    subscription, allowed = await access.events(principal, subscription_id, since, until)
    public = notifier.settings.public_fhir_base
    base = public or fhir_base(request)
    status = status_parameters(subscription, "query-event", public, allowed)
    entries: list[dict[str, Any]] = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": status}]
    if subscription.content == "id-only":
        entries += [{"fullUrl": reference(base, f"{e.focus_type}/{e.focus_id}")} for e in allowed]
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": instant(now()),
        "entry": entries,
    }
    return fhir(bundle)
