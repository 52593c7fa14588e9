"""Messaging HTTP API: thin routes, every access to a patient's messages through the policy.

- ``POST /messages``: personnel (or a system client) send a referral, discharge summary or care
  message to a HER-id or an organisation master data knows; asked as ``write`` of
  ``Communication`` on the patient's record (category of the content) — 202 with the queued
  message and its ``Location``;
- ``GET /messages?patient=&status=`` and ``GET /messages/{id}``: status, attempts, last error,
  receipt and history (``search``/``read``); without ``patient`` only a client holding
  ``Communication.search`` (an operator) lists, e.g. ``status=dead_lettered``;
- ``POST /messages/{id}/resend``: an operator puts a dead-lettered message back in the queue;
- ``POST /messages/inbound``: the transport delivers a message (bearer: the exchange's inbound
  token, not a platform token); answered 202 with the receipt queued for the sender;
- ``GET /messages/inbound?patient=`` and ``GET /messages/inbound/{id}``: received messages, for
  the journal and authorised personnel.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, status
from fastapi.responses import JSONResponse, Response

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal, Principal
from akson_common.errors import (
    PROTECTED_RESPONSES,
    BadRequest,
    NotFound,
    Unauthorized,
    error_response,
)
from akson_common.events import OutboundStatus
from akson_common.policy import (
    Action,
    Policy,
    PolicyEnforcementPoint,
    ResourceRef,
    written_unread,
)
from messaging.models import (
    InboundAnswer,
    InboundList,
    InboundMessage,
    MessageList,
    OutboundMessage,
    SendIn,
)
from messaging.service import RESOURCE_TYPE, Messaging
from messaging.settings import MessagingSettings

router = APIRouter(tags=["messaging"], responses=PROTECTED_RESPONSES)
NATIONAL_ID = r"^\d{11}$"
INTERNAL = {"lease_owner"}

Service = Annotated[Messaging, Depends(state_dependency("messaging", Messaging))]
Settings = Annotated[MessagingSettings, Depends(state_dependency("settings", MessagingSettings))]
Limit = Annotated[int, Query(ge=1, le=200)]


NOT_FOUND = error_response(404, "No such message")


async def authorize(
    policy: PolicyEnforcementPoint,
    principal: Principal,
    action: Action,
    service: Messaging,
    patient: str | None,
    category: str | None = None,
) -> None:
    """Ask about a patient's messages as a whole (send, list): 403 when refused."""
    context = await service.policy_context(patient)
    resource = ResourceRef(type=RESOURCE_TYPE, patient=patient, category=category)
    await policy.enforce(principal, action, resource, context)


async def visible(
    policy: PolicyEnforcementPoint,
    principal: Principal,
    action: Action,
    service: Messaging,
    message_id: str,
    found: OutboundMessage | InboundMessage | None,
    category: str | None,
) -> None:
    """Decide ``action`` on one message: 404 alike when unknown or refused."""
    patient = found.patient if found is not None else None
    context = await service.policy_context(patient)
    resource = ResourceRef(type=RESOURCE_TYPE, patient=patient, category=category, id=message_id)
    await policy.visible(
        principal,
        action,
        resource,
        context,
        known=found is not None,
        not_found=NotFound("no such message"),
    )


async def read_back(
    policy: PolicyEnforcementPoint,
    principal: Principal,
    service: Messaging,
    message: OutboundMessage,
) -> bool:
    """A response body is a read: may the writer read the message it queued?"""
    context = await service.policy_context(message.patient)
    resource = ResourceRef(
        type=RESOURCE_TYPE, patient=message.patient, category=message.category, id=message.id
    )
    return await policy.read_back(principal, resource, context) is not None


def _public(message: OutboundMessage) -> dict[str, Any]:
    return message.model_dump(mode="json", exclude=INTERNAL)


async def readable(
    message_id: str,
    action: Action,
    principal: Principal,
    policy: PolicyEnforcementPoint,
    service: Messaging,
) -> OutboundMessage:
    message = await service.queue.get(message_id)
    category = message.category if message is not None else None
    await visible(policy, principal, action, service, message_id, message, category)
    assert message is not None  # visible raised for an unknown one
    return message


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboundMessage,
    responses=error_response(422, "Invalid message, or no HER-id for the recipient"),
)
async def send_message(
    request: Annotated[SendIn, Body()],
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
) -> Response:
    """Queue a message; the policy is asked before anything about the patient can leave."""
    await authorize(policy, principal, "write", service, request.patient, request.category)
    message = await service.send(request, principal)
    location = {"Location": f"/messages/{message.id}"}
    if not await read_back(policy, principal, service, message):
        return written_unread(202, {"id": message.id}, location)
    return JSONResponse(_public(message), status_code=202, headers=location)


# -- inbound (declared before /messages/{id}) -----------------------------------------------


async def transport_peer(request: Request) -> None:
    """The exchange presents the inbound token; without a configured token nothing comes in."""
    settings: MessagingSettings = request.app.state.settings
    expected = settings.inbound_token.get_secret_value()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not secrets.compare_digest(token, expected):
        raise Unauthorized("the transport's inbound token is required")


@router.post(
    "/messages/inbound",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InboundAnswer,
    dependencies=[Depends(transport_peer)],
    responses=error_response(400, "Not a message that can be answered (no id or sender)"),
)
async def receive_message(request: Request, service: Service) -> InboundAnswer:
    """Receive a FHIR message bundle (or an AppRec answering one of ours)."""
    try:
        raw = await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    return await service.receive(raw)


@router.get("/messages/inbound", response_model=InboundList)
async def list_inbound(
    patient: Annotated[str, Query(pattern=NATIONAL_ID)],
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    limit: Limit = 50,
    after: str | None = None,
) -> InboundList:
    await authorize(policy, principal, "search", service, patient, "general")
    page = await service.inbound.page({"patient": patient}, limit, after)
    return InboundList(items=page.items, next=page.next_after)


@router.get("/messages/inbound/{message_id}", response_model=InboundMessage, responses=NOT_FOUND)
async def get_inbound(
    message_id: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> InboundMessage:
    message = await service.inbound.get(message_id)
    await visible(policy, principal, "read", service, message_id, message, "general")
    assert message is not None  # visible raised for an unknown one
    return message


# -- outbound -------------------------------------------------------------------------------


@router.get("/messages", response_model=MessageList)
async def list_messages(
    principal: CurrentPrincipal,
    policy: Policy,
    service: Service,
    patient: Annotated[str | None, Query(pattern=NATIONAL_ID)] = None,
    message_status: Annotated[OutboundStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    after: str | None = None,
) -> JSONResponse:
    """Outbound messages of one patient, or (operators) of every patient, by status."""
    await authorize(policy, principal, "search", service, patient, "general" if patient else None)
    query: dict[str, Any] = {}
    if patient is not None:
        query["patient"] = patient
    if message_status is not None:
        query["status"] = message_status
    page = await service.queue.page(query, limit, after)
    return JSONResponse({"items": [_public(m) for m in page.items], "next": page.next_after})


@router.get("/messages/{message_id}", response_model=OutboundMessage, responses=NOT_FOUND)
async def get_message(
    message_id: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> JSONResponse:
    message = await readable(message_id, "read", principal, policy, service)
    return JSONResponse(_public(message))


@router.post(
    "/messages/{message_id}/resend",
    response_model=OutboundMessage,
    responses={**NOT_FOUND, **error_response(409, "The message is not dead-lettered")},
)
async def resend_message(
    message_id: str, principal: CurrentPrincipal, policy: Policy, service: Service
) -> Response:
    """Put a dead-lettered message back in the queue, its attempts starting over."""
    message = await readable(message_id, "write", principal, policy, service)
    queued = await service.resend(message)
    if not await read_back(policy, principal, service, queued):
        return written_unread(200, {"id": queued.id})
    return JSONResponse(_public(queued))
