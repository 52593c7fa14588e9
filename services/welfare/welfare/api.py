"""Welfare's HTTP API: thin routes; every access asks the policy first, in the service
(``DeviceAccess``, ``Intake``).

Device registry (home-care personnel with a care relation; the citizen reads their own):

- ``POST /devices`` registers a device and assigns it to a patient (``write`` of a
  ``DeviceAssignment``: needs the patient's device consent): 201, ``Location``, ``ETag``;
- ``POST /devices/{id}/assign`` assigns an unassigned device again (the same decision; 409
  while assigned); ``POST /devices/{id}/unassign`` ends the assignment (``write`` of the
  ``Device``: no consent needed to stop);
- ``GET /devices/{id}`` and ``GET /devices?patient=``.

Intake (a registered hub or vendor: a system client with ``DeviceMessage.write``):

- ``POST /fhir/R4/$process-message``: a FHIR message Bundle; 200 with the receipt (a response
  message: ``ok``, or ``fatal-error`` coded unknown-device, device-not-assigned or
  consent-withdrawn); a message id already received is answered with its receipt again
  (``Akson-Duplicate: true``) and stored once; a malformed message is a 4xx OperationOutcome.
  A hub's token reads nothing: it holds no read scope, and every read route asks the policy.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, status
from fastapi.responses import JSONResponse, Response

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal, Principal
from akson_common.errors import (
    PROTECTED_RESPONSES,
    BadRequest,
    UnsupportedMediaType,
    error_response,
)
from akson_common.etags import etag
from akson_common.fhir import FHIR_JSON, capability_statement, fhir_base
from akson_common.guard import HostileInput, parse_json
from akson_common.policy import (
    written_unread,
)
from welfare.models import AssignmentIn, Device, DeviceIn, DeviceList
from welfare.service import DeviceAccess, Intake

router = APIRouter(tags=["welfare"], responses=PROTECTED_RESPONSES)
NATIONAL_ID = r"^\d{11}$"
MAX_MESSAGE_BYTES = 1_000_000

Access = Annotated[DeviceAccess, Depends(state_dependency("device_access", DeviceAccess))]
IntakeDep = Annotated[Intake, Depends(state_dependency("intake", Intake))]

NOT_FOUND = error_response(404, "No such device (or not yours to know about: the same answer)")
CHANGE = {
    **NOT_FOUND,
    **error_response(409, "Registered already, assigned already, or changed meanwhile"),
}


def _json(device: Device, status_code: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(
        device.model_dump(mode="json"),
        status_code=status_code,
        headers={"ETag": etag(device.version), **headers},
    )


async def _answer(
    device: Device, principal: Principal, access: Access, status_code: int = 200, **headers: str
) -> Response:
    """The device if the writer may read it, else its id."""
    if not await access.read_back(device, principal):
        return written_unread(
            status_code, {"id": device.id}, {"ETag": etag(device.version), **headers}
        )
    return _json(device, status_code, **headers)


@router.post(
    "/devices",
    status_code=status.HTTP_201_CREATED,
    response_model=Device,
    responses={**error_response(409, "A device with this id is registered")},
)
async def register_device(
    request: Annotated[DeviceIn, Body()], principal: CurrentPrincipal, access: Access
) -> Response:
    """Register a device and assign it to the patient (their device consent must hold)."""
    device = await access.register(request, principal)
    return await _answer(device, principal, access, 201, Location=f"/devices/{device.id}")


@router.post("/devices/{device_id}/assign", response_model=Device, responses=CHANGE)
async def assign_device(
    device_id: str,
    request: Annotated[AssignmentIn, Body()],
    principal: CurrentPrincipal,
    access: Access,
) -> Response:
    """Assign a registered, unassigned device to a patient (their device consent must hold)."""
    return await _answer(await access.assign(device_id, request, principal), principal, access)


@router.post("/devices/{device_id}/unassign", response_model=Device, responses=CHANGE)
async def unassign_device(device_id: str, principal: CurrentPrincipal, access: Access) -> Response:
    """End the device's assignment: its messages are refused from now on."""
    return await _answer(await access.unassign(device_id, principal), principal, access)


@router.get("/devices/{device_id}", response_model=Device, responses=NOT_FOUND)
async def get_device(device_id: str, principal: CurrentPrincipal, access: Access) -> JSONResponse:
    return _json(await access.readable(device_id, "read", principal))


@router.get("/devices", response_model=DeviceList)
async def list_devices(
    patient: Annotated[str, Query(pattern=NATIONAL_ID)], principal: CurrentPrincipal, access: Access
) -> DeviceList:
    """The devices assigned to the patient."""
    return DeviceList(items=await access.for_patient(patient, principal))


# -- FHIR ------------------------------------------------------------------------------------


@router.get("/fhir/R4/metadata", tags=["fhir"])
async def capabilities(request: Request) -> JSONResponse:
    """The CapabilityStatement: the messaging endpoint ($process-message) only."""
    statement = capability_statement(
        "Akson welfare (fhir.resources R4B models, wire-compatible with R4 for the message types)",
        fhir_base(request),
        [],
        operations=[
            {
                "name": "process-message",
                "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
            }
        ],
    )
    return JSONResponse(statement, media_type=FHIR_JSON)


async def message_body(request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media not in {FHIR_JSON, "application/json"}:
        raise UnsupportedMediaType(f"send {FHIR_JSON}")
    raw = await request.body()
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadRequest(f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    try:
        return parse_json(raw)
    except HostileInput:
        raise BadRequest("the body is not acceptable JSON") from None


@router.post(
    "/fhir/R4/$process-message",
    tags=["fhir"],
    responses={
        **error_response(403, "Not a client that delivers device messages"),
        **error_response(422, "Not a readable message"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        }
    },
)
async def process_message(
    principal: CurrentPrincipal,
    body: Annotated[Any, Depends(message_body)],
    intake: IntakeDep,
) -> JSONResponse:
    """Receive a device message from a hub or vendor; answer with its receipt."""
    answer = await intake.process(principal, body)
    headers = {"Akson-Duplicate": "true"} if answer.duplicate else {}
    return JSONResponse(answer.receipt, media_type=FHIR_JSON, headers=headers)
