"""Welfare logic: the device registry and the intake of device messages.

Every change of a device is one single-document write conditional on the version read. An
intake is: read the envelope (422 if malformed), answer a message already received with the
receipt it got (stored once), find the device and ask the policy (the patient's device
consent), then store the message with its receipt and the alerts its rules raised (one write:
the outbox relays the alerts at once), then write its entries into the journal; an entry the
journal does not take becomes a dead letter. A receipt answers every message the policy lets
the sender deliver at all.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from akson_common.app import Platform
from akson_common.auth import Principal
from akson_common.db import DuplicateKeyError
from akson_common.errors import Conflict, Forbidden
from akson_common.events import WELFARE_ALERT_RAISED, WelfareAlertRaisedV1, cloud_event
from akson_common.outbox import Outbox
from akson_common.policy import PolicyContext, PolicyEnforcementPoint, ResourceRef
from akson_common.projections import PatientProjections
from welfare.bundles import Message, Verdict, read_message, receipt, validated_entries
from welfare.models import (
    Actor,
    Assignment,
    AssignmentIn,
    Device,
    DeviceChange,
    DeviceIn,
    DeviceStatus,
)
from welfare.rules import Finding, evaluate
from welfare.store import MESSAGES, DeadLetter, StoredMessage, WelfareStore, message_key
from welfare.writer import JournalWriter

log = logging.getLogger("akson.welfare")
CATEGORY = "welfare"
# what the policy denies a delivering client for when it may deliver, but not this device's
DEVICE_REASONS = frozenset({"no_device_consent", "no_legal_basis"})


def now() -> datetime:
    return datetime.now(UTC)


def actor(principal: Principal) -> Actor:
    return Actor(
        kind=principal.kind, id=principal.id, hpr_number=principal.hpr_number, unit=principal.unit
    )


def device_ref(kind: str, device_id: str | None, patient: str | None) -> ResourceRef:
    """``DeviceAssignment`` and ``DeviceMessage`` need the patient's consent for the device
    (policies/akson/authz/welfare.rego); ``Device`` is the registry entry."""
    return ResourceRef(type=kind, patient=patient, category=CATEGORY, id=device_id)


def assigned(device: Device, request: AssignmentIn, principal: Principal, at: datetime) -> Device:
    status: DeviceStatus = "assigned"
    assignment = Assignment(
        patient=request.patient,
        unit=request.unit or principal.unit,
        thresholds=request.thresholds,
        assigned_at=at,
        assigned_by=actor(principal),
    )
    change = DeviceChange(
        version=device.version + 1,
        status=status,
        patient=request.patient,
        at=at,
        by=actor(principal),
    )
    return device.model_copy(
        update={
            "version": change.version,
            "status": status,
            "assignment": assignment,
            "history": [*device.history, change],
        }
    )


def unassigned(device: Device, principal: Principal, at: datetime) -> Device:
    if device.assignment is None:
        raise Conflict("the device is not assigned", version=device.version)
    status: DeviceStatus = "unassigned"
    change = DeviceChange(
        version=device.version + 1,
        status=status,
        patient=device.assignment.patient,
        at=at,
        by=actor(principal),
    )
    return device.model_copy(
        update={
            "version": change.version,
            "status": status,
            "assignment": None,
            "history": [*device.history, change],
        }
    )


class Devices:
    def __init__(self, store: WelfareStore) -> None:
        self.repository = store.devices

    async def get(self, device_id: str) -> Device | None:
        return await self.repository.get_one_or_none(device_id)

    async def for_patient(self, patient: str) -> list[Device]:
        return await self.repository.find({"assignment.patient": patient}, limit=200)

    async def register(self, request: DeviceIn, principal: Principal) -> Device:
        at = now()
        registered = Device(
            id=request.id,
            version=0,
            kind=request.kind,
            hub=request.hub,
            status="unassigned",
            registered_at=at,
        )
        device = assigned(registered, request, principal, at)
        try:
            await self.repository.collection.insert_one(self.repository.to_document(device))
        except DuplicateKeyError:
            raise Conflict("a device with this id is registered") from None
        return device

    async def assign(self, device: Device, request: AssignmentIn, principal: Principal) -> Device:
        if device.assignment is not None:
            raise Conflict("the device is assigned: unassign it first", version=device.version)
        return await self._save(device, assigned(device, request, principal, now()))

    async def unassign(self, device: Device, principal: Principal) -> Device:
        return await self._save(device, unassigned(device, principal, now()))

    async def _save(self, before: Device, after: Device) -> Device:
        state = self.repository.to_document(after)
        result = await self.repository.collection.find_one_and_update(
            # only the version we read: a concurrent change makes this match nothing
            {"_id": before.id, "version": before.version},
            {"$set": {k: v for k, v in state.items() if k != "_id"}},
        )
        if result is None:
            raise Conflict("the device changed meanwhile")
        return after


@dataclass(frozen=True)
class Answer:
    receipt: dict[str, Any]
    verdict: str
    duplicate: bool = False


def alert_event(finding: Finding, message: Message, device: Device, patient: str) -> dict[str, Any]:
    unit = device.assignment.unit if device.assignment is not None else None
    occurred = None
    if finding.occurred_at:
        try:
            occurred = datetime.fromisoformat(finding.occurred_at.replace("Z", "+00:00"))
        except ValueError:
            occurred = None
    payload = WelfareAlertRaisedV1(
        alert_id=uuid.uuid4().hex,
        patient=patient,
        device=device.id,
        unit=unit,
        rule=finding.rule,
        code=finding.code,
        code_system=finding.code_system,
        value=finding.value,
        low=finding.low,
        high=finding.high,
        value_unit=finding.value_unit,
        message_id=message.id,
        occurred_at=occurred,
    )
    return cloud_event(WELFARE_ALERT_RAISED, payload, source="welfare", subject=patient)


class Intake:
    def __init__(
        self,
        platform: Platform,
        store: WelfareStore,
        devices: Devices,
        projections: PatientProjections,
        writer: JournalWriter,
    ) -> None:
        self.outbox: Outbox = platform.outbox
        self.pep: PolicyEnforcementPoint = platform.pep
        self.max_entries = int(getattr(platform.settings, "max_entries", 50))
        self.store = store
        self.devices = devices
        self.projections = projections
        self.writer = writer
        self.outbox.track(MESSAGES)

    async def process(self, principal: Principal, body: Any) -> Answer:
        message = read_message(body, self.max_entries)
        key = message_key(principal.id, message.id)
        stored = await self.store.messages.get_one_or_none(key)
        if stored is not None:
            return await self._again(stored)
        device = await self.devices.get(message.device)
        if device is not None and device.hub is not None and device.hub != principal.id:
            device = None  # another sender's device: as unknown as one never registered
        patient = device.patient if device is not None else None
        context = await self.projections.context(patient) if patient else PolicyContext()
        decision = await self.pep.decide(
            principal, "write", device_ref("DeviceMessage", message.device, patient), context
        )
        if not decision.allow and not set(decision.reasons) <= DEVICE_REASONS:
            # not a client that delivers device messages at all: no receipt, nothing stored
            raise Forbidden("Access denied by policy.", reasons=list(decision.reasons))
        verdict: Verdict
        if decision.allow and device is not None and patient is not None:
            entries = validated_entries(message, patient)
            verdict = "accepted"
            findings = evaluate(entries, device.assignment.thresholds if device.assignment else [])
            events = [alert_event(f, message, device, patient) for f in findings]
        else:
            entries, events = [], []
            if device is None:
                verdict = "unknown-device"
            elif patient is None:
                verdict = "device-not-assigned"
            else:
                verdict = "consent-withdrawn"
        answer = receipt(message, verdict)
        record = StoredMessage(
            key=key,
            message_id=message.id,
            sender=principal.id,
            device=message.device,
            patient=patient if verdict == "accepted" else None,
            verdict=verdict,
            receipt=answer,
            received_at=now(),
            alerts=[event["data"]["alert_id"] for event in events],
        )
        existed = await self.outbox.insert_many(
            MESSAGES, [(self.store.messages.to_document(record), events)]
        )
        if existed:
            # the same message at the same time: the first one stored answers both
            again = await self.store.messages.get_one_or_none(key)
            if again is not None:
                return await self._again(again)
        if entries:
            await self._record(record, entries)
        return Answer(answer, verdict)

    async def _again(self, stored: StoredMessage) -> Answer:
        await self.store.messages.collection.update_one(
            {"_id": stored.key}, {"$inc": {"deliveries": 1}}
        )
        return Answer(stored.receipt, stored.verdict, duplicate=True)

    async def _record(self, record: StoredMessage, entries: list[Any]) -> None:
        recorded: list[str] = []
        dead = 0
        for entry in entries:
            written = await self.writer.create(entry)
            if written.recorded and written.resource_id:
                recorded.append(f"{entry.resource_type}/{written.resource_id}")
                continue
            dead += 1
            letter = DeadLetter(
                id=uuid.uuid4().hex,
                message_key=record.key,
                entry=entry.index,
                resource_type=entry.resource_type,
                resource=entry.resource,
                status=written.status,
                at=now(),
            )
            await self.store.dead_letters.collection.insert_one(
                self.store.dead_letters.to_document(letter)
            )
        await self.store.messages.collection.update_one(
            {"_id": record.key}, {"$set": {"recorded": recorded, "dead_letters": dead}}
        )
