"""Messaging HTTP API: thin routes; every access to a patient's messages asks the policy first, in
``messaging.access``.

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
from akson_common.auth import CurrentPrincipal
from akson_common.errors import (
    PROTECTED_RESPONSES,
    BadRequest,
    Unauthorized,
    error_response,
)
from akson_common.events import OutboundStatus
from akson_common.policy import (
    written_unread,
)
from messaging.access import MessageAccess
from messaging.models import (
    InboundAnswer,
    InboundList,
    InboundMessage,
    MessageList,
    OutboundMessage,
    SendIn,
)
from messaging.service import Messaging
from messaging.settings import MessagingSettings

router = APIRouter(tags=["messaging"], responses=PROTECTED_RESPONSES)
NATIONAL_ID = r"^\d{11}$"
INTERNAL = {"lease_owner"}

Service = Annotated[Messaging, Depends(state_dependency("messaging", Messaging))]
Access = Annotated[MessageAccess, Depends(state_dependency("message_access", MessageAccess))]
Settings = Annotated[MessagingSettings, Depends(state_dependency("settings", MessagingSettings))]
Limit = Annotated[int, Query(ge=1, le=200)]


NOT_FOUND = error_response(404, "No such message")


def _public(message: OutboundMessage) -> dict[str, Any]:
    return message.model_dump(mode="json", exclude=INTERNAL)


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboundMessage,
    responses=error_response(422, "Invalid message, or no HER-id for the recipient"),
)
async def send_message(
    request: Annotated[SendIn, Body()], principal: CurrentPrincipal, access: Access
) -> Response:
    """Queue a message; the policy is asked before anything about the patient can leave."""
    message = await access.send(principal, request)
    location = {"Location": f"/messages/{message.id}"}
    if not await access.read_back(principal, message):
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
    access: Access,
    limit: Limit = 50,
    after: str | None = None,
) -> InboundList:
    page = await access.inbound_page(principal, patient, limit, after)
    return InboundList(items=page.items, next=page.next_after)


@router.get("/messages/inbound/{message_id}", response_model=InboundMessage, responses=NOT_FOUND)
async def get_inbound(
    message_id: str, principal: CurrentPrincipal, access: Access
) -> InboundMessage:
    return await access.inbound(principal, message_id)


# -- outbound -------------------------------------------------------------------------------


@router.get("/messages", response_model=MessageList)
async def list_messages(
    principal: CurrentPrincipal,
    access: Access,
    patient: Annotated[str | None, Query(pattern=NATIONAL_ID)] = None,
    message_status: Annotated[OutboundStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    after: str | None = None,
) -> JSONResponse:
    """Outbound messages of one patient, or (operators) of every patient, by status."""
    page = await access.outbound_page(principal, patient, message_status, limit, after)
    return JSONResponse({"items": [_public(m) for m in page.items], "next": page.next_after})


@router.get("/messages/{message_id}", response_model=OutboundMessage, responses=NOT_FOUND)
async def get_message(message_id: str, principal: CurrentPrincipal, access: Access) -> JSONResponse:
    return JSONResponse(_public(await access.outbound(principal, message_id)))


@router.post(
    "/messages/{message_id}/resend",
    response_model=OutboundMessage,
    responses={**NOT_FOUND, **error_response(409, "The message is not dead-lettered")},
)
async def resend_message(message_id: str, principal: CurrentPrincipal, access: Access) -> Response:
    """Put a dead-lettered message back in the queue, its attempts starting over."""
    queued = await access.resend(principal, message_id)
    if not await access.read_back(principal, queued):
        return written_unread(200, {"id": queued.id})
    return JSONResponse(_public(queued))
