"""The emergency-access (break-glass) review queue.

Every ``journal.access.emergency`` event opens a review (one per decision id, or per event when
the decision id is unknown). An auditor closes it as justified or not justified with a comment
(policy: type ``AccessReview``, action ``write``: the only thing an auditor writes). The outcome
and its ``audit.emergency_access.reviewed`` event are one single-document update (the outbox).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from akson_common.db import Database, DuplicateKeyError, Repository, when_not_busy
from akson_common.errors import Conflict
from akson_common.events import (
    EMERGENCY_ACCESS,
    EMERGENCY_ACCESS_REVIEWED,
    Delivery,
    EmergencyAccessReviewedV1,
    EmergencyAccessV1,
    Outcome,
    Subscriptions,
    cloud_event,
)
from akson_common.outbox import Outbox
from audit.models import Review, ReviewVerdict

REVIEWS = "emergency_reviews"


class ReviewQueue:
    def __init__(self, database: Database, subscriptions: Subscriptions, outbox: Outbox) -> None:
        # dates as BSON dates (the queue sorts by accessed_at)
        self.repository = Repository(
            database,
            REVIEWS,
            Review,
            indexes=[
                IndexModel([("status", ASCENDING), ("accessed_at", DESCENDING)]),
                IndexModel([("patient", ASCENDING)]),
            ],
            dump="python",
        )
        self.reviews = self.repository.collection
        self.outbox = outbox
        outbox.track(REVIEWS)
        subscriptions.on(EMERGENCY_ACCESS)(self.on_emergency_access)

    async def on_emergency_access(self, event: EmergencyAccessV1, delivery: Delivery) -> Outcome:
        review_id = event.decision_id or f"event-{delivery.event_id}"
        document = {
            "_id": review_id,
            "status": "open",
            **event.model_dump(mode="python", exclude={"at"}),
            "accessed_at": event.at,
            "opened_at": datetime.now(UTC),
        }
        try:
            await when_not_busy(lambda: self.reviews.insert_one(document))
        except DuplicateKeyError:
            pass  # the same break-glass reported again: one review
        return Outcome.SUCCESS

    async def list(self, status: str | None, patient: str | None, limit: int) -> list[Review]:
        selector: dict[str, Any] = {}
        if status is not None:
            selector["status"] = status
        if patient is not None:
            selector["patient"] = patient
        cursor = self.reviews.find(selector).sort("accessed_at", DESCENDING).limit(limit)
        return [self.repository.to_model(d) async for d in cursor]

    async def find(self, review_id: str) -> Review | None:
        return await self.repository.get_one_or_none(review_id)

    async def close(self, review: Review, verdict: ReviewVerdict, reviewer: str) -> Review:
        now = datetime.now(UTC)
        payload = EmergencyAccessReviewedV1(
            review_id=review.id,
            decision_id=review.decision_id,
            patient=review.patient,
            practitioner=review.practitioner,
            organisation=review.organisation,
            outcome=verdict.outcome,
            reviewer=reviewer,
            reviewed_at=now,
        )
        envelope = cloud_event(
            EMERGENCY_ACCESS_REVIEWED, payload, source="audit", subject=review.patient
        )
        # one conditional single-document update: the verdict and its event together, once
        updated = await self.outbox.save(
            REVIEWS,
            {"_id": review.id, "status": "open"},
            {
                "$set": {
                    "status": "closed",
                    "outcome": verdict.outcome,
                    "comment": verdict.comment,
                    "reviewer": reviewer,
                    "reviewed_at": now,
                }
            },
            [envelope],
        )
        if updated is None:
            raise Conflict("the review is already closed")
        return self.repository.to_model(updated)
