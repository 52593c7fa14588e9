"""Welfare logic: the device registry and the intake of device messages.

Every change of a device is one single-document write conditional on the version read. An
intake is: read the envelope (422 if malformed), answer a message already received with the
receipt it got (stored once), find the device and ask the policy (the patient's device
consent), then store the message with its receipt and the alerts its rules raised (one write:
the outbox relays the alerts at once) and its entries, queued (``pending``), then write them into
the journal. What the journal cannot take for now (down, 5xx) stays queued and is tried again
with backoff by the retry worker, from any replica and after a crash; each write carries an
``Idempotency-Key`` (message and entry), so a retry never makes a second resource. An entry the
journal refuses for good, or still cannot take after the last attempt, becomes a dead letter. A
receipt answers every message the policy lets the sender deliver at all.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from akson_common.app import Platform
from akson_common.auth import Principal
from akson_common.errors import Conflict, Forbidden, NotFound
from akson_common.events import WELFARE_ALERT_RAISED, WelfareAlertRaisedV1, cloud_event
from akson_common.outbox import Outbox
from akson_common.policy import Action, PolicyContext, PolicyEnforcementPoint, ResourceRef
from akson_common.projections import PatientProjections
from akson_common.queue import claim_due
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
from welfare.settings import WelfareSettings
from welfare.store import (
    MESSAGES,
    DeadLetter,
    PendingEntry,
    StoredMessage,
    WelfareStore,
    message_key,
)
from welfare.writer import JournalWriter

log = logging.getLogger("akson.welfare")
CATEGORY = "welfare"
# what the policy denies a delivering client for when it may deliver, but not this device's
DEVICE_REASONS = frozenset({"no_device_consent", "no_legal_basis"})
# how long one worker holds a message whose entries it writes into the journal
LEASE = timedelta(seconds=60)


def now() -> datetime:
    return datetime.now(UTC)


def device_ref(kind: str, device_id: str | None, patient: str | None) -> ResourceRef:
    """``DeviceAssignment`` and ``DeviceMessage`` need the patient's consent for the device
    (policies/akson/authz/welfare.rego); ``Device`` is the registry entry."""
    return ResourceRef(type=kind, patient=patient, category=CATEGORY, id=device_id)


def assigned(device: Device, request: AssignmentIn, principal: Principal, at: datetime) -> Device:
    assignment = Assignment(
        patient=request.patient,
        unit=request.unit or principal.unit,
        thresholds=request.thresholds,
        assigned_at=at,
        assigned_by=Actor.of(principal),
    )
    return _changed(device, "assigned", request.patient, assignment, principal, at)


def unassigned(device: Device, principal: Principal, at: datetime) -> Device:
    if device.assignment is None:
        raise Conflict("the device is not assigned", version=device.version)
    return _changed(device, "unassigned", device.assignment.patient, None, principal, at)


def _changed(
    device: Device,
    status: DeviceStatus,
    patient: str,
    assignment: Assignment | None,
    principal: Principal,
    at: datetime,
) -> Device:
    """The device's next version, with the change in its history."""
    change = DeviceChange(
        version=device.version + 1, status=status, patient=patient, at=at, by=Actor.of(principal)
    )
    return device.model_copy(
        update={
            "version": change.version,
            "status": status,
            "assignment": assignment,
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
        if not await self.repository.insert(device):
            raise Conflict("a device with this id is registered")
        return device

    async def assign(self, device: Device, request: AssignmentIn, principal: Principal) -> Device:
        if device.assignment is not None:
            raise Conflict("the device is assigned: unassign it first", version=device.version)
        return await self._save(device, assigned(device, request, principal, now()))

    async def unassign(self, device: Device, principal: Principal) -> Device:
        return await self._save(device, unassigned(device, principal, now()))

    async def _save(self, before: Device, after: Device) -> Device:
        # only the version we read: a concurrent change makes this match nothing
        if not await self.repository.compare_and_set(before.version, after):
            raise Conflict("the device changed meanwhile")
        return after


class DeviceAccess:
    """The registry as callers reach it: every operation asks the policy first (assigning is a
    ``write`` of a ``DeviceAssignment``, which needs the patient's device consent), and what
    it answers is a read too."""

    def __init__(
        self, devices: Devices, pep: PolicyEnforcementPoint, projections: PatientProjections
    ) -> None:
        self.devices, self.pep, self.projections = devices, pep, projections

    async def _context(self, patient: str | None) -> PolicyContext:
        return await self.projections.context(patient) if patient else PolicyContext()

    async def readable(self, device_id: str, action: Action, principal: Principal) -> Device:
        """The device if the caller may ``action`` it on its patient; 404 alike when unknown,
        unassigned or refused."""
        device = await self.devices.get(device_id)
        patient = device.patient if device is not None else None
        await self.pep.visible(
            principal,
            action,
            device_ref("Device", device_id, patient),
            await self._context(patient),
            known=patient is not None,
            not_found=NotFound("no such device"),
        )
        assert device is not None  # visible raised for an unknown one
        return device

    async def read_back(self, device: Device, principal: Principal) -> bool:
        """A response body is a read: may the writer read what it wrote?"""
        patient = device.patient or (device.history[-1].patient if device.history else None)
        resource = device_ref("Device", device.id, patient)
        context = await self._context(patient)
        return await self.pep.read_back(principal, resource, context) is not None

    async def _may_assign(self, device_id: str, patient: str, principal: Principal) -> None:
        await self.pep.enforce(
            principal,
            "write",
            device_ref("DeviceAssignment", device_id, patient),
            await self._context(patient),
        )

    async def register(self, request: DeviceIn, principal: Principal) -> Device:
        await self._may_assign(request.id, request.patient, principal)
        return await self.devices.register(request, principal)

    async def assign(self, device_id: str, request: AssignmentIn, principal: Principal) -> Device:
        await self._may_assign(device_id, request.patient, principal)
        device = await self.devices.get(device_id)
        if device is None:
            raise NotFound("no such device")
        return await self.devices.assign(device, request, principal)

    async def unassign(self, device_id: str, principal: Principal) -> Device:
        device = await self.readable(device_id, "write", principal)
        return await self.devices.unassign(device, principal)

    async def for_patient(self, patient: str, principal: Principal) -> list[Device]:
        context = await self._context(patient)
        await self.pep.enforce(principal, "search", device_ref("Device", None, patient), context)
        return await self.devices.for_patient(patient)


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
        settings: WelfareSettings,
        store: WelfareStore,
        devices: Devices,
        projections: PatientProjections,
        writer: JournalWriter,
    ) -> None:
        self.outbox: Outbox = platform.outbox
        self.pep: PolicyEnforcementPoint = platform.pep
        self.max_entries = settings.max_entries
        self.retry = Retry(
            base_seconds=settings.journal_retry_base_seconds,
            max_seconds=settings.journal_retry_max_seconds,
            max_attempts=settings.journal_max_attempts,
        )
        self.owner = uuid.uuid4().hex
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
        at = now()
        pending = [PendingEntry(index=e.index, resource_type=e.resource_type, resource=e.resource)
                   for e in entries]  # fmt: skip
        record = StoredMessage(
            key=key,
            message_id=message.id,
            sender=principal.id,
            device=message.device,
            patient=patient if verdict == "accepted" else None,
            verdict=verdict,
            receipt=answer,
            received_at=at,
            alerts=[event["data"]["alert_id"] for event in events],
            status="queued" if pending else None,
            pending=pending,
            # the retry worker takes it only if the attempt below does not finish (a crash)
            next_attempt_at=at + LEASE if pending else None,
        )
        existed = await self.outbox.insert_many(
            MESSAGES, [(self.store.messages.to_document(record), events)]
        )
        if existed:
            # the same message at the same time: the first one stored answers both
            again = await self.store.messages.get_one_or_none(key)
            if again is not None:
                return await self._again(again)
        if pending:
            await self.attempt(record)
        return Answer(answer, verdict)

    async def _again(self, stored: StoredMessage) -> Answer:
        await self.store.messages.update({"_id": stored.key}, {"$inc": {"deliveries": 1}})
        return Answer(stored.receipt, stored.verdict, duplicate=True)

    async def attempt(self, record: StoredMessage) -> None:
        """Write the message's pending entries into the journal; keep what it could not take
        for now queued (with backoff), dead-letter what it refused for good or after the last
        attempt."""
        recorded: list[str] = []
        waiting: list[PendingEntry] = []
        failed: list[tuple[PendingEntry, int]] = []
        last_status = 0
        for entry in record.pending:
            written = await self.writer.create(
                entry.resource_type, entry.resource, f"{record.key}.{entry.index}"
            )
            if written.recorded and written.resource_id:
                recorded.append(f"{entry.resource_type}/{written.resource_id}")
            elif written.retryable:
                waiting.append(entry)
                last_status = written.status
            else:
                failed.append((entry, written.status))
        attempts = record.attempts + 1
        if waiting and attempts >= self.retry.max_attempts:
            failed += [(entry, last_status) for entry in waiting]
            waiting = []
        for entry, status in failed:
            await self._dead_letter(record, entry, status)
        changes: dict[str, Any] = {
            "recorded": [*record.recorded, *recorded],
            "dead_letters": record.dead_letters + len(failed),
            "pending": [entry.model_dump(mode="json") for entry in waiting],
            "attempts": attempts,
            "status": "queued" if waiting else "recorded",
            "next_attempt_at": now() + self.retry.after(attempts) if waiting else None,
            "lease_until": None,
            "lease_owner": None,
            "last_error_code": str(last_status) if waiting else None,
        }
        await self.store.messages.update({"_id": record.key}, {"$set": changes})

    async def retry_due(self) -> bool:
        """Lease one message whose entries wait for the journal and attempt them; False when
        none is due."""
        document = await claim_due(self.store.messages.collection, now(), self.owner, LEASE)
        if document is None:
            return False
        await self.attempt(self.store.messages.to_model(document))
        return True

    async def run_retries(self, poll_seconds: float) -> None:
        """The retry worker: every replica runs one; the lease keeps them apart."""
        while True:
            try:
                if await self.retry_due():
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database away: try again at the next poll
                log.warning("journal retry failed", extra={"error": type(error).__name__})
            await asyncio.sleep(poll_seconds)

    async def _dead_letter(self, record: StoredMessage, entry: PendingEntry, status: int) -> None:
        letter = DeadLetter(
            id=f"{record.key}.{entry.index}",
            message_key=record.key,
            entry=entry.index,
            resource_type=entry.resource_type,
            resource=entry.resource,
            status=status,
            at=now(),
        )
        # False: dead-lettered by an attempt that did not get to record it
        await self.store.dead_letters.insert(letter)


@dataclass(frozen=True)
class Retry:
    base_seconds: float
    max_seconds: float
    max_attempts: int

    def after(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th attempt: doubling from the base, capped."""
        return timedelta(seconds=min(self.max_seconds, self.base_seconds * 2 ** (attempts - 1)))
