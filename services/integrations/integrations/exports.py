"""The exporter: pending timesheet entries and orders leave as files, only if the policy allows.

Every sweep (and at once after an event changed something) the exporter

1. resumes batches it claimed before and did not conclude (a crash, the policy or the binding
   away), then claims new ones: the pending entries (orders) of one recipient, day and unit,
   up to ``export_batch_size``. A batch's id is the export id and names the file, so a retried
   batch writes the same file again instead of a second one;
2. builds the payload exactly as it will be written and asks the minimisation policy
   (``akson.export``, through the enforcement point: unreachable or undefined means **not
   sent**, the batch stays pending and is retried);
3. allowed: writes the file through the ``exports`` output binding, then records the export
   with its ``integrations.export.exported`` event (outbox). Refused: never sent; it records a
   dead letter with the policy's reasons and violations (the flagged values withheld) and the
   ``integrations.export.refused`` alert;
4. marks the batch's entries exported or refused.

File formats:

- payroll, ``payroll/<day>/<unit>/<export id>.csv``: UTF-8, ``;``-separated, one header row
  ``employee_id;date;unit;cost_centre;hours;line_kind;visits;reference``; hours with two
  decimals and a point, negative for reversals; one line per employee, day, unit, cost centre
  and line kind (``normal``, ``reversal``, ``correction``); ``visits`` counts the visit versions
  summed; ``reference`` is stable for the same entries;
- logistics, ``logistics/<day>/<unit>/<export id>.json``: ``{"format":
  "akson.replenishment-order.v1", "day", "unit", "orders": [{"order_id", "unit", "item",
  "quantity", "date"}]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import csv
import io
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from pymongo.errors import ConnectionFailure

from akson_common.app import Platform
from akson_common.background import Background
from akson_common.db import Repository
from akson_common.events import (
    EXPORT_EXPORTED,
    EXPORT_REFUSED,
    ExportExportedV1,
    ExportRecipient,
    ExportRefusedV1,
    cloud_event,
)
from akson_common.policy import UNAVAILABLE, Decision, PolicyUnavailable
from integrations.logistics import ORDERS
from integrations.models import (
    ExportRecord,
    SupplyOrder,
    TimesheetEntry,
    Violation,
    token,
)
from integrations.payroll import ENTRIES
from integrations.settings import IntegrationsSettings

log = logging.getLogger("akson.integrations.exports")

EXPORTS = "exports"
DECISION_RULE = "decision"
WITHHELD = "[withheld]"
# an export rule that is not defined is no decision either (the policy engine not answering
# raises PolicyUnavailable)
NO_DECISION = frozenset({"policy_undefined"})
PAYROLL_COLUMNS = (
    "employee_id",
    "date",
    "unit",
    "cost_centre",
    "hours",
    "line_kind",
    "visits",
    "reference",
)
# the same shape the policy refuses; used only to scrub what a dead letter keeps
NATIONAL_ID = re.compile(r"(?<![0-9])[0-9]{6}[ -]?[0-9]{5}(?![0-9])")
PENDING_SCAN = 5000
# a batch that keeps failing (a poison pill) is set aside after this many sweeps
MAX_BATCH_ATTEMPTS = 3


def timesheet_lines(entries: Sequence[TimesheetEntry]) -> list[dict[str, Any]]:
    """Entries summed per employee, day, unit, cost centre and line kind, in a stable order."""
    groups: dict[tuple[str, str, str, str, str], list[TimesheetEntry]] = {}
    for entry in entries:
        key = (entry.employee_id, entry.day.isoformat(), entry.unit, entry.cost_centre, entry.kind)
        groups.setdefault(key, []).append(entry)
    return [
        {
            "employee_id": employee_id,
            "date": day,
            "unit": unit,
            "cost_centre": cost_centre,
            "hours": round(sum(e.hours for e in group), 2),
            "line_kind": kind,
            "visits": len(group),
            "reference": f"ts-{token(*sorted(e.id for e in group))}",
        }
        for (employee_id, day, unit, cost_centre, kind), group in sorted(groups.items())
    ]


def timesheet_csv(header: dict[str, Any], records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(PAYROLL_COLUMNS)
    for record in records:
        row = {**record, "hours": f"{record['hours']:.2f}"}
        writer.writerow([row[column] for column in PAYROLL_COLUMNS])
    return out.getvalue()


def order_records(orders: Sequence[SupplyOrder]) -> list[dict[str, Any]]:
    return [
        {
            "order_id": order.id,
            "unit": order.unit,
            "item": order.item,
            "quantity": _whole(order.quantity),
            "date": order.day.isoformat(),
        }
        for order in sorted(orders, key=lambda o: (o.item, o.sequence))
    ]


def _whole(quantity: float) -> float | int:
    """40.0 is written as 40: order lines are mostly counts."""
    return int(quantity) if float(quantity).is_integer() else quantity


def orders_json(header: dict[str, Any], records: list[dict[str, Any]]) -> str:
    return json.dumps({**header, "orders": records}, indent=2, ensure_ascii=False) + "\n"


def exportable(day: date, today: date, closed_days_only: bool) -> bool:
    """Whether a day's pending items may leave now: at once, or (``after_day_end``, payroll)
    only once the day is over, so a unit's normal lines of a day come in one file."""
    return not closed_days_only or day < today


def file_segment(value: str) -> str:
    """A unit as a path segment: nothing that could climb out of the export folder."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value).strip(".") or "_"


def withheld(policy_input: dict[str, Any], violations: Sequence[Violation]) -> dict[str, Any]:
    """The input with every value the policy flagged replaced, and any national-id-shaped
    run scrubbed anywhere else: a dead letter must not become the leak it prevented."""
    kept = copy.deepcopy(policy_input)
    for violation in violations:
        *steps, last = violation.path.split("/")
        node: Any = kept
        for step in steps:
            node = _child(node, step)
        if isinstance(node, dict) and last in node:
            node[last] = WITHHELD
        elif isinstance(node, list) and _child(node, last) is not None:
            node[int(last)] = WITHHELD
    scrubbed: dict[str, Any] = _scrub(kept)
    return scrubbed


def _child(node: Any, step: str) -> Any:
    if isinstance(node, dict):
        return node.get(step)
    if isinstance(node, list) and step.isdigit() and int(step) < len(node):
        return node[int(step)]
    return None


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return NATIONAL_ID.sub(WITHHELD, value)
    if isinstance(value, int) and not isinstance(value, bool) and NATIONAL_ID.search(str(value)):
        return WITHHELD
    return value


@dataclass(frozen=True)
class Feed:
    """One recipient system: where its pending items are and how its files look."""

    recipient: ExportRecipient
    items: Repository[TimesheetEntry] | Repository[SupplyOrder]
    format: str
    extension: str
    records: Callable[[Any], list[dict[str, Any]]]
    render: Callable[[dict[str, Any], list[dict[str, Any]]], str]
    closed_days_only: bool = False


class Exporter(Background):
    def __init__(self, platform: Platform, settings: IntegrationsSettings) -> None:
        self.settings = settings
        self.database = platform.database
        self.pep = platform.pep
        self.http = platform.http
        self.outbox = platform.outbox
        self.outbox.track(EXPORTS)
        self.records = Repository(self.database, EXPORTS, ExportRecord)
        self.exports = self.records.collection
        self.binding_url = f"{settings.dapr_http_endpoint}/v1.0/bindings/{settings.export_binding}"
        token_value = settings.dapr_api_token.get_secret_value()
        self.headers = {"dapr-api-token": token_value} if token_value else {}
        self.feeds = (
            Feed(
                "payroll",
                Repository(self.database, ENTRIES, TimesheetEntry),
                "akson.timesheet.v1",
                "csv",
                timesheet_lines,
                timesheet_csv,
                closed_days_only=settings.payroll_export == "after_day_end",
            ),
            Feed(
                "logistics",
                Repository(self.database, ORDERS, SupplyOrder),
                "akson.replenishment-order.v1",
                "json",
                order_records,
                orders_json,
            ),
        )
        self._wake = asyncio.Event()
        self.name = "exporter"
        self._failures: dict[str, int] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """One sweep over every feed; returns how many batches reached a verdict."""
        concluded = 0
        for feed in self.feeds:
            collection = feed.items.collection
            claimed = collection.find(
                {"state": "pending", "batch": {"$ne": None}}, {"batch": 1}
            ).limit(PENDING_SCAN)
            for batch in sorted({str(d["batch"]) async for d in claimed}):
                concluded += await self._attempt(feed, batch)
            for ids in await self._unclaimed_groups(feed):
                batch = f"exp-{token(uuid.uuid4().hex, length=20)}"
                await collection.update_many(
                    {"_id": {"$in": ids}, "batch": None}, {"$set": {"batch": batch}}
                )
                concluded += await self._attempt(feed, batch)
        return concluded

    async def _attempt(self, feed: Feed, batch: str) -> int:
        """One batch, isolated: a batch that fails (not the database or sidecar being away)
        is tried ``MAX_BATCH_ATTEMPTS`` times, then set aside (it stays pending, visible in
        the reconciliation report) — the batches behind it are exported meanwhile."""
        if self._failures.get(batch, 0) >= MAX_BATCH_ATTEMPTS:
            return 0
        try:
            concluded = await self.export_batch(feed, batch)
        except (ConnectionFailure, httpx.TransportError):
            raise  # the whole sweep waits for the database or the sidecar
        except Exception:
            self._failures[batch] = attempts = self._failures.get(batch, 0) + 1
            log.exception(
                "export batch failed" + (": set aside" if attempts >= MAX_BATCH_ATTEMPTS else ""),
                extra={"export_id": batch, "recipient": feed.recipient, "attempts": attempts},
            )
            return 0
        self._failures.pop(batch, None)
        return concluded

    async def _unclaimed_groups(self, feed: Feed) -> list[list[str]]:
        collection = feed.items.collection
        cursor = collection.find({"state": "pending", "batch": None}, {"day": 1, "unit": 1})
        groups: dict[tuple[str, str], list[str]] = {}
        async for document in cursor.limit(PENDING_SCAN):
            day = str(document["day"])
            if not exportable(date.fromisoformat(day), self._today(), feed.closed_days_only):
                continue
            groups.setdefault((day, str(document["unit"])), []).append(str(document["_id"]))
        size = self.settings.export_batch_size
        return [
            sorted(ids)[start : start + size]
            for _, ids in sorted(groups.items())
            for start in range(0, len(ids), size)
        ]

    def _today(self) -> date:
        return datetime.now(ZoneInfo(self.settings.timezone)).date()

    async def export_batch(self, feed: Feed, batch: str) -> int:
        """Bring one batch to a verdict; 0 when it must wait (no decision, binding away)."""
        collection = feed.items.collection
        documents = [d async for d in collection.find({"batch": batch})]
        if not documents:
            return 0
        if await self.exports.find_one({"_id": batch}, {"status": 1}) is None:
            items: list[Any] = [feed.items.to_model(d) for d in documents]
            record, event = await self._verdict(feed, batch, items)
            if record is None:
                return 0
            await self.outbox.insert_many(EXPORTS, [(self.records.to_document(record), [event])])
        concluded = await self.exports.find_one({"_id": batch}, {"status": 1})
        if concluded is None:
            return 0
        await collection.update_many(
            {"batch": batch, "state": "pending"},
            {"$set": {"state": concluded["status"], "export_id": batch}},
        )
        return 1

    async def _verdict(
        self, feed: Feed, batch: str, items: list[Any]
    ) -> tuple[ExportRecord | None, dict[str, Any]]:
        day: date = items[0].day
        unit: str = items[0].unit
        folder = f"{feed.recipient}/{day.isoformat()}/{file_segment(unit)}"
        file_name = f"{folder}/{batch}.{feed.extension}"
        header = {"format": feed.format, "day": day.isoformat(), "unit": unit}
        records = feed.records(items)
        policy_input = {
            "recipient": feed.recipient,
            "file_name": file_name,
            "payload": {"header": header, "records": records},
        }
        try:
            decision = await self.pep.decide_at(
                self.settings.export_policy_package, DECISION_RULE, policy_input
            )
        except PolicyUnavailable:
            decision = None
        if decision is None or (not decision.allow and NO_DECISION & set(decision.reasons)):
            log.warning(
                "no export decision: not sent, retried later",
                extra={
                    "export_id": batch,
                    "reasons": list(decision.reasons) if decision else [UNAVAILABLE],
                },
            )
            return None, {}
        at = datetime.now(UTC)
        entry_ids = sorted(str(item.id) for item in items)
        if decision.allow:
            if not await self._send(file_name, feed.render(header, records)):
                return None, {}
            record = ExportRecord(
                id=batch,
                recipient=feed.recipient,
                status="exported",
                day=day,
                unit=unit,
                file_name=file_name,
                records=len(records),
                entries=entry_ids,
                decision_id=decision.decision_id,
                policy_version=decision.policy_version,
                at=at,
            )
            exported = ExportExportedV1(
                export_id=batch,
                recipient=feed.recipient,
                file_name=file_name,
                day=day,
                unit=unit,
                records=len(records),
                decision_id=decision.decision_id,
                at=at,
            )
            return record, cloud_event(
                EXPORT_EXPORTED, exported, source="integrations", subject=batch
            )
        return self._dead_letter(feed, batch, policy_input, decision, entry_ids, at)

    def _dead_letter(
        self,
        feed: Feed,
        batch: str,
        policy_input: dict[str, Any],
        decision: Decision,
        entry_ids: list[str],
        at: datetime,
    ) -> tuple[ExportRecord, dict[str, Any]]:
        violations = [Violation.model_validate(v) for v in decision.violations]
        kept = withheld(policy_input, violations)
        payload = kept["payload"]
        log.warning(
            "export refused by policy: dead-lettered, not sent",
            extra={
                "export_id": batch,
                "recipient": feed.recipient,
                "reasons": list(decision.reasons),
            },
        )
        record = ExportRecord(
            id=batch,
            recipient=feed.recipient,
            status="refused",
            day=date.fromisoformat(policy_input["payload"]["header"]["day"]),
            unit=str(payload["header"]["unit"]),
            file_name=str(kept["file_name"]),
            records=len(payload["records"]),
            entries=entry_ids,
            reasons=list(decision.reasons),
            violations=violations,
            payload=payload,
            decision_id=decision.decision_id,
            policy_version=decision.policy_version,
            at=at,
        )
        refused = ExportRefusedV1(
            export_id=batch,
            recipient=feed.recipient,
            records=record.records,
            reasons=tuple(decision.reasons),
            decision_id=decision.decision_id,
            at=at,
        )
        return record, cloud_event(EXPORT_REFUSED, refused, source="integrations", subject=batch)

    async def _send(self, file_name: str, content: str) -> bool:
        """Write the file through the output binding (localstorage: ``fileName``; blob stores
        such as S3: ``key``). CSV and JSON text always holds characters outside base64, so
        the localstorage binding never mistakes it for base64 and decodes it."""
        body = {
            "operation": "create",
            "data": content,
            "metadata": {"fileName": file_name, "key": file_name},
        }
        try:
            response = await self.http.post(
                self.binding_url, json=body, headers=self.headers, timeout=10.0
            )
        except httpx.HTTPError as error:
            log.warning("export binding unreachable", extra={"error": type(error).__name__})
            return False
        if not response.is_success:
            log.warning("export binding failed", extra={"status": response.status_code})
            return False
        return True

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self.settings.export_interval_seconds
                )
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("export sweep failed, will retry")
