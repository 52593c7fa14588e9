"""Welfare's HTTP API: thin routes, every access through the policy first.

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
    NotFound,
    UnsupportedMediaType,
    error_response,
)
from akson_common.etags import etag
from akson_common.fhir import FHIR_JSON, capability_statement, fhir_base
from akson_common.guard import HostileInput, parse_json
from akson_common.policy import (
    Action,
    Policy,
    PolicyContext,
    PolicyEnforcementPoint,
    written_unread,
)
from akson_common.projections import PatientProjections
from welfare.models import AssignmentIn, Device, DeviceIn, DeviceList
from welfare.service import Devices, Intake, device_ref

router = APIRouter(tags=["welfare"], responses=PROTECTED_RESPONSES)
NATIONAL_ID = r"^\d{11}$"
MAX_MESSAGE_BYTES = 1_000_000

DevicesDep = Annotated[Devices, Depends(state_dependency("devices", Devices))]
IntakeDep = Annotated[Intake, Depends(state_dependency("intake", Intake))]
ReadModels = Annotated[
    PatientProjections, Depends(state_dependency("projections", PatientProjections))
]

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


async def _context(patient: str | None, read_models: PatientProjections) -> PolicyContext:
    return await read_models.context(patient) if patient else PolicyContext()


async def readable(
    device_id: str,
    action: Action,
    principal: Principal,
    policy: PolicyEnforcementPoint,
    devices: Devices,
    read_models: PatientProjections,
) -> Device:
    """The device if the caller may ``action`` it on its patient; 404 alike when unknown,
    unassigned or refused."""
    device = await devices.get(device_id)
    patient = device.patient if device is not None else None
    await policy.visible(
        principal,
        action,
        device_ref("Device", device_id, patient),
        await _context(patient, read_models),
        known=patient is not None,
        not_found=NotFound("no such device"),
    )
    assert device is not None  # visible raised for an unknown one
    return device


async def _answer(
    device: Device,
    principal: Principal,
    policy: PolicyEnforcementPoint,
    read_models: PatientProjections,
    status_code: int = 200,
    **headers: str,
) -> Response:
    """A response body is a read: the device if the writer may read it, else its id."""
    patient = device.patient or (device.history[-1].patient if device.history else None)
    context = await _context(patient, read_models)
    resource = device_ref("Device", device.id, patient)
    if await policy.read_back(principal, resource, context) is None:
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
    request: Annotated[DeviceIn, Body()],
    principal: CurrentPrincipal,
    policy: Policy,
    devices: DevicesDep,
    read_models: ReadModels,
) -> Response:
    """Register a device and assign it to the patient (their device consent must hold)."""
    context = await _context(request.patient, read_models)
    await policy.enforce(
        principal, "write", device_ref("DeviceAssignment", request.id, request.patient), context
    )
    device = await devices.register(request, principal)
    return await _answer(
        device, principal, policy, read_models, 201, Location=f"/devices/{device.id}"
    )


@router.post("/devices/{device_id}/assign", response_model=Device, responses=CHANGE)
async def assign_device(
    device_id: str,
    request: Annotated[AssignmentIn, Body()],
    principal: CurrentPrincipal,
    policy: Policy,
    devices: DevicesDep,
    read_models: ReadModels,
) -> Response:
    """Assign a registered, unassigned device to a patient (their device consent must hold)."""
    context = await _context(request.patient, read_models)
    await policy.enforce(
        principal, "write", device_ref("DeviceAssignment", device_id, request.patient), context
    )
    device = await devices.get(device_id)
    if device is None:
        raise NotFound("no such device")
    changed = await devices.assign(device, request, principal)
    return await _answer(changed, principal, policy, read_models)


@router.post("/devices/{device_id}/unassign", response_model=Device, responses=CHANGE)
async def unassign_device(
    device_id: str,
    principal: CurrentPrincipal,
    policy: Policy,
    devices: DevicesDep,
    read_models: ReadModels,
) -> Response:
    """End the device's assignment: its messages are refused from now on."""
    device = await readable(device_id, "write", principal, policy, devices, read_models)
    changed = await devices.unassign(device, principal)
    return await _answer(changed, principal, policy, read_models)


@router.get("/devices/{device_id}", response_model=Device, responses=NOT_FOUND)
async def get_device(
    device_id: str,
    principal: CurrentPrincipal,
    policy: Policy,
    devices: DevicesDep,
    read_models: ReadModels,
) -> JSONResponse:
    return _json(await readable(device_id, "read", principal, policy, devices, read_models))


@router.get("/devices", response_model=DeviceList)
async def list_devices(
    patient: Annotated[str, Query(pattern=NATIONAL_ID)],
    principal: CurrentPrincipal,
    policy: Policy,
    devices: DevicesDep,
    read_models: ReadModels,
) -> DeviceList:
    """The devices assigned to the patient."""
    context = await _context(patient, read_models)
    await policy.enforce(principal, "search", device_ref("Device", None, patient), context)
    return DeviceList(items=await devices.for_patient(patient))


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
