"""Completeness by double recording: OPA's decision log reconciled with the enforcement points.

Two streams name the same decisions:

- every enforcement point publishes the decision ids it enforced (``policy.decision.enforced``,
  batched, through its outbox): audit inserts each id into ``enforced`` (``_id`` = decision id);
- every decision OPA's log delivers and the store keeps for the first time is inserted into
  ``logged`` (``_id`` = decision id) by the intake.

Both are *pending* collections: an id leaves them once reconciled, so they stay small and the
reconciler's scans (a sequential scan on FerretDB v1) cost little. Every ``interval`` seconds
the reconciler:

1. takes the pending logged ids and meets them with the pending enforced ids (both read whole,
   once a round): an id on both sides is complete and leaves both;
2. takes the pending enforced ids that waited out the grace period (or close an open gap) and
   looks them up in ``decisions`` one ``_id`` at a time (the chain itself: a re-sent
   enforcement, or an intake that stopped between the chain and ``logged``): found ones are
   complete (and leave ``logged`` too). A young enforced id is not looked up: its logged side
   is on its way, and step 1 meets it. (Looking all of them up with ``_id $in`` read the whole
   chain every round on FerretDB v1, which does not push ``$in`` down: 97 % of PostgreSQL's
   time under load, issue 15.);
3. an id still on one side only once it has waited ``grace`` seconds since it arrived is a
   **gap**: one document in ``gaps`` (``_id`` = decision id, so a gap is raised once whatever
   the number of replicas) with its ``audit.alert.gap`` event, through the outbox;
4. an open gap whose missing side arrives later (a late OPA upload, a late enforcement report)
   is marked ``resolved`` with an ``audit.alert.gap.resolved`` event.

The grace period must exceed OPA's upload delay plus the enforcement points' flush and relay
delay (locally 1–2 s and ~1 s; in production OPA's reporting delay).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from akson_common.background import Background
from akson_common.db import Database, Document, insert_new, when_not_busy
from akson_common.events import (
    DECISION_GAP,
    DECISION_GAP_RESOLVED,
    DECISIONS_ENFORCED,
    DecisionGapV1,
    DecisionsEnforcedV1,
    Delivery,
    Outcome,
    Subscriptions,
    cloud_event,
)
from akson_common.outbox import Outbox
from audit.models import Side, aware

log = logging.getLogger("akson.audit.completeness")

ENFORCED = "enforced"
LOGGED = "logged"
GAPS = "gaps"
DECISIONS = "decisions"
CHUNK = 500


class Reconciler(Background):
    def __init__(
        self,
        database: Database,
        subscriptions: Subscriptions,
        outbox: Outbox,
        *,
        grace_seconds: float,
        interval_seconds: float,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.grace = timedelta(seconds=grace_seconds)
        self.interval = interval_seconds
        self.enforced = database.collection(ENFORCED)
        self.logged = database.collection(LOGGED)
        self.gaps = database.collection(GAPS)
        self.decisions = database.collection(DECISIONS)
        outbox.track(GAPS)
        database.declare_indexes(
            GAPS, [IndexModel([("status", ASCENDING), ("detected_at", DESCENDING)])]
        )
        subscriptions.on(DECISIONS_ENFORCED)(self.on_enforced)
        self.name = "audit-reconciler"

    # -- the two streams -----------------------------------------------------------------------

    async def on_enforced(self, event: DecisionsEnforcedV1, delivery: Delivery) -> Outcome:
        now = datetime.now(UTC)
        await insert_new(
            self.database.collection(ENFORCED),
            [
                {
                    "_id": d.decision_id,
                    "service": event.service,
                    "allow": d.allow,
                    "enforced_at": d.at,
                    "seen_at": now,
                }
                for d in event.decisions
            ],
        )
        return Outcome.SUCCESS

    async def logged_now(self, decision_ids: Iterable[str]) -> None:
        """The intake stored these decisions for the first time."""
        now = datetime.now(UTC)
        await insert_new(
            self.database.collection(LOGGED),
            [{"_id": i, "seen_at": now} for i in dict.fromkeys(decision_ids)],
        )

    # -- reconciling ---------------------------------------------------------------------------

    async def reconcile(self, now: datetime | None = None) -> dict[str, int]:
        """One round; returns counts (matched, gaps raised, gaps resolved)."""
        now = now or datetime.now(UTC)
        cutoff = now - self.grace
        counts = {"matched": 0, "raised": 0, "resolved": 0}
        # the open gaps, once a round: an equality FerretDB v1 pushes down (an ``_id $in`` it
        # does not: each would read the whole collection)
        open_gaps = await self._open_gaps()
        logged = await self.logged.find({}).to_list(None)
        # both pending collections are read whole, once each: a lookup per chunk (``_id $in``)
        # read the whole other collection each time on FerretDB v1
        pending_enforced = (
            {d["_id"] async for d in self.enforced.find({}, {"_id": 1})} if logged else set()
        )
        # Each side is forgotten logged first, enforced second: a crash in between (make chaos,
        # audit killed -9 mid-round) leaves the enforced side, which step two completes from
        # the chain. The other order left a logged side alone: a false gap, never resolved
        # (the enforced report was consumed), 103 of them in one kill.
        for chunk in _chunks(logged):
            ids = [d["_id"] for d in chunk]
            on_both = {i for i in ids if i in pending_enforced}
            known = {i for i in ids if i in open_gaps}  # a gap raised before: resolved now
            counts["resolved"] += await self._resolve([open_gaps.pop(i) for i in known], now)
            expired = [
                d
                for d in chunk
                if d["_id"] not in on_both
                and d["_id"] not in known
                and aware(d["seen_at"]) <= cutoff
            ]
            counts["raised"] += await self._raise(
                [_gap(d["_id"], "logged_only", None, None, now) for d in expired]
            )
            finished = {*on_both, *known, *(d["_id"] for d in expired)}
            counts["matched"] += len(on_both)
            await self._forget(self.logged, finished)
            await self._forget(self.enforced, on_both)
        enforced = await self.enforced.find({}).to_list(None)
        for chunk in _chunks(enforced):
            # an enforced id whose logged side is still to come waits for step one; only one
            # that waited out the grace (or has an open gap to close) is looked up in the chain,
            # by ``_id`` one at a time (indexed; rare: a late or lost OPA upload, a re-sent
            # report, an intake stopped between the chain and ``logged``)
            expired = [d for d in chunk if aware(d["seen_at"]) <= cutoff]
            expired_ids = {d["_id"] for d in expired}
            candidates = [
                d["_id"] for d in chunk if d["_id"] in open_gaps or d["_id"] in expired_ids
            ]
            in_chain = await self._in_chain(candidates)
            counts["resolved"] += await self._resolve(
                [open_gaps[i] for i in in_chain if i in open_gaps], now
            )
            # in the chain: complete. Only forgotten once expired: the intake writes the chain
            # before ``logged``, so a young one is left for the logged side to meet (forgetting
            # it now would leave that logged id alone: a false gap)
            done = [d["_id"] for d in expired if d["_id"] in in_chain]
            counts["matched"] += len(done)
            missing = [d for d in expired if d["_id"] not in in_chain]
            counts["raised"] += await self._raise(
                [
                    _gap(d["_id"], "enforced_only", d.get("service"), d.get("allow"), now)
                    for d in missing
                ]
            )
            await self._forget(self.logged, done)
            await self._forget(self.enforced, [*done, *(d["_id"] for d in missing)])
        if counts["raised"] or counts["resolved"]:
            log.warning("decision log reconciled", extra=counts)
        return counts

    async def _open_gaps(self) -> dict[Any, Document]:
        """The open gaps either side's arrival closes, by decision id. A quarantine gap is not
        among them: it stays for the auditors."""
        cursor = self.gaps.find({"status": "open"}, {"_outbox": 0})
        return {d["_id"]: d async for d in cursor if d.get("side") != "quarantined"}

    async def _in_chain(self, ids: list[Any]) -> set[Any]:
        """Which of ``ids`` the chain holds, by single-``_id`` finds (indexed everywhere)."""
        found: set[Any] = set()
        for decision_id in ids:
            if await self.decisions.find_one({"_id": decision_id}, {"_id": 1}) is not None:
                found.add(decision_id)
        return found

    async def _forget(self, collection: Any, ids: Iterable[Any]) -> None:
        chosen = list(dict.fromkeys(ids))
        if chosen:
            await when_not_busy(lambda: collection.delete_many({"_id": {"$in": chosen}}))

    async def _raise(self, gaps: list[Document]) -> int:
        if not gaps:
            return 0
        documents = []
        for gap in gaps:
            payload = DecisionGapV1(
                decision_id=gap["_id"],
                side=gap["side"],
                service=gap["service"],
                allow=gap["allow"],
                status="open",
                detected_at=gap["detected_at"],
            )
            event = cloud_event(DECISION_GAP, payload, source="audit", subject=gap["_id"])
            documents.append((gap, [event]))
        existed = await self.outbox.insert_many(GAPS, documents)
        return len(gaps) - len(existed)

    async def _resolve(self, gaps: list[Document], now: datetime) -> int:
        """Close these open gaps (from :meth:`_open_gaps`): their missing side has arrived. The
        update names ``status: open``, so a gap another replica closed meanwhile is left."""
        resolved = 0
        for gap in gaps:
            payload = DecisionGapV1(
                decision_id=gap["_id"],
                side=gap["side"],
                service=gap.get("service"),
                allow=gap.get("allow"),
                status="resolved",
                detected_at=aware(gap["detected_at"]),
                resolved_at=now,
            )
            event = cloud_event(DECISION_GAP_RESOLVED, payload, source="audit", subject=gap["_id"])
            updated = await self.outbox.save(
                GAPS,
                {"_id": gap["_id"], "status": "open"},
                {"$set": {"status": "resolved", "resolved_at": now}},
                [event],
            )
            resolved += updated is not None
        return resolved

    # -- the background task -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.reconcile()
            except Exception as error:
                log.warning("reconciliation failed, will retry", extra={"error": repr(error)})

    async def list(self, status: str | None, limit: int) -> list[Document]:
        selector = {} if status is None else {"status": status}
        cursor = self.gaps.find(selector, {"_outbox": 0}).sort("detected_at", DESCENDING)
        return await cursor.limit(limit).to_list(None)


def _gap(
    decision_id: str, side: Side, service: str | None, allow: bool | None, now: datetime
) -> Document:
    return {
        "_id": decision_id,
        "side": side,
        "service": service,
        "allow": allow,
        "status": "open",
        "detected_at": now,
        "resolved_at": None,
    }


def _chunks(documents: list[Document]) -> Iterable[list[Document]]:
    for start in range(0, len(documents), CHUNK):
        yield documents[start : start + CHUNK]
