"""Logistics: supply use accumulates per unit and item; reaching the item's threshold places a
replenishment order for everything used since the last one.

Idempotent on the usage id (a re-published copy with a new event id counts once): a usage
recorded as applied is skipped outright, and for the window before that record is written each
``(unit, item)`` counter lists the last usages it counted; one compare-and-set on its
``version`` adds the quantity, the usage id and any order in a single write. The ``orders``
collection the exporter works on is a projection of the counter's orders, keyed by
``(unit, item, sequence)``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from akson_common.db import Database, Repository
from akson_common.events import Delivery, Outcome, SuppliesUsedV1
from integrations.models import FEED_INDEXES, StockCounter, SupplyOrder, token
from integrations.received import Consumer
from integrations.settings import IntegrationsSettings

log = logging.getLogger("akson.integrations.logistics")

COUNTERS = "stock_counters"
ORDERS = "orders"
CAS_ATTEMPTS = 8
# usage ids a counter remembers; older replays are caught by the received-events record
APPLIED_KEPT = 1000


def threshold(settings: IntegrationsSettings, item: str) -> float:
    return settings.order_thresholds.get(item, settings.default_order_threshold)


def counted(
    counter: StockCounter,
    usage_id: str,
    quantity: float,
    limit: float,
    *,
    at: datetime,
    day: str,
) -> StockCounter:
    """The counter after one usage: an order when the accumulated use reaches ``limit``."""
    accumulated = round(counter.accumulated + quantity, 6)
    sequence = counter.sequence
    orders = list(counter.orders)
    if accumulated >= limit:
        sequence += 1
        orders.append(
            SupplyOrder.model_validate(
                {
                    "id": f"ord-{token(counter.unit, counter.item, str(sequence))}",
                    "unit": counter.unit,
                    "item": counter.item,
                    "quantity": accumulated,
                    "day": day,
                    "sequence": sequence,
                    "recorded_at": at,
                }
            )
        )
        accumulated = 0.0
    return counter.model_copy(
        update={
            "accumulated": accumulated,
            "sequence": sequence,
            "version": counter.version + 1,
            "applied": [*counter.applied, usage_id][-APPLIED_KEPT:],
            "orders": orders,
        }
    )


class Logistics(Consumer):
    def open(self, database: Database) -> None:
        self.counters = Repository(database, COUNTERS, StockCounter)
        self.orders = Repository(database, ORDERS, SupplyOrder, indexes=FEED_INDEXES)

    async def on_supplies_used(self, event: SuppliesUsedV1, delivery: Delivery) -> Outcome:
        day = event.used_at.astimezone(ZoneInfo(self.settings.timezone)).date()
        key = f"supplies:{event.usage_id}"
        quantities: dict[str, float] = {}
        for line in event.items:
            quantities[line.item] = quantities.get(line.item, 0.0) + line.quantity
        if await self.received.applied(key):
            return Outcome.SUCCESS  # a copy of a usage counted before (a new event id)
        if not quantities or any(q <= 0 for q in quantities.values()):
            await self.received.record(key, "supplies", day, event.unit, "invalid")
            log.warning("supply usage without positive quantities: dropped", extra={"key": key})
            return Outcome.DROP
        for item, quantity in sorted(quantities.items()):
            if not await self._count(event, item, quantity, day.isoformat()):
                return Outcome.RETRY
        await self.received.record(key, "supplies", day, event.unit, "applied")
        self.on_change()
        return Outcome.SUCCESS

    async def _count(self, event: SuppliesUsedV1, item: str, quantity: float, day: str) -> bool:
        counter_id = f"{event.unit}/{item}"
        for _ in range(CAS_ATTEMPTS):
            stored = await self.counters.get_one_or_none(counter_id)
            current = stored or StockCounter(id=counter_id, unit=event.unit, item=item)
            if event.usage_id in current.applied:
                await self.orders.insert_new(current.orders)  # repair a delivery stopped halfway
                return True
            changed = counted(
                current,
                event.usage_id,
                quantity,
                threshold(self.settings, item),
                at=datetime.now(UTC),
                day=day,
            )
            if await self.counters.compare_and_set(
                None if stored is None else current.version, changed
            ):
                await self.orders.insert_new(changed.orders[len(current.orders) :])
                return True
        return False
