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
from fastapi.responses import JSONResponse

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
from akson_common.policy import Action, Policy, PolicyEnforcementPoint, ResourceRef
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
    message_id: str | None = None,
) -> None:
    context = await service.policy_context(patient)
    resource = ResourceRef(type=RESOURCE_TYPE, patient=patient, category=category, id=message_id)
    await policy.enforce(principal, action, resource, context)


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
    if message is None:
        # the same answer whether it does not exist or is not yours to know about
        await authorize(policy, principal, action, service, None)
        raise NotFound("no such message")
    await authorize(
        policy, principal, action, service, message.patient, message.category, message.id
    )
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
) -> JSONResponse:
    """Queue a message; the policy is asked before anything about the patient can leave."""
    await authorize(policy, principal, "write", service, request.patient, request.category)
    message = await service.send(request, principal)
    return JSONResponse(
        _public(message), status_code=202, headers={"Location": f"/messages/{message.id}"}
    )


# -- inbound (declared before /messages/{id}) -----------------------------------------------


def transport_peer(request: Request) -> None:
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
    if message is None:
        await authorize(policy, principal, "read", service, None)
        raise NotFound("no such message")
    await authorize(policy, principal, "read", service, message.patient, "general", message.id)
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
) -> JSONResponse:
    """Put a dead-lettered message back in the queue, its attempts starting over."""
    message = await readable(message_id, "write", principal, policy, service)
    return JSONResponse(_public(await service.resend(message)))
