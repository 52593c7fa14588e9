"""The emergency-access (break-glass) review queue.

Every ``journal.access.emergency`` event opens a review (one per decision id, or per event when
the decision id is unknown). An auditor closes it as justified or not justified with a comment
(policy: type ``AccessReview``, action ``write``: the only thing an auditor writes). The outcome
and its ``audit.emergency_access.reviewed`` event are one single-document update (the outbox).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal
from akson_common.db import Database, DuplicateKeyError, Repository, when_not_busy
from akson_common.errors import PROTECTED_RESPONSES, Conflict, NotFound
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
from akson_common.policy import Policy, PolicyContext, ResourceRef, written_unread

REVIEWS = "emergency_reviews"
AUDIT = PolicyContext(purpose="audit")
ReviewOutcome = Literal["justified", "not_justified"]


class Review(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    status: Literal["open", "closed"]
    decision_id: str | None
    patient: str
    practitioner: str
    unit: str | None
    organisation: str | None
    reason_code: str
    resource_type: str
    category: str | None
    accessed_at: datetime
    opened_at: datetime
    outcome: ReviewOutcome | None = None
    comment: str | None = None
    reviewer: str | None = None
    reviewed_at: datetime | None = None


class ReviewPage(BaseModel):
    items: list[Review]


class ReviewVerdict(BaseModel):
    outcome: ReviewOutcome
    comment: str = Field(min_length=1, max_length=2000)


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


router = APIRouter(
    prefix="/audit/reviews", tags=["emergency reviews"], responses=PROTECTED_RESPONSES
)
Queue = Annotated[ReviewQueue, Depends(state_dependency("reviews", ReviewQueue))]


@router.get("", response_model=ReviewPage)
async def list_reviews(
    principal: CurrentPrincipal,
    policy: Policy,
    queue: Queue,
    status: Literal["open", "closed"] | None = None,
    patient: Annotated[str | None, Query(min_length=1, max_length=80)] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 100,
) -> ReviewPage:
    """Break-glass accesses to review (``status=open``) or reviewed, newest first."""
    await policy.enforce(
        principal, "search", ResourceRef(type="AuditEvent", patient=patient), AUDIT
    )
    return ReviewPage(items=await queue.list(status, patient, count))


@router.post("/{review_id}", response_model=Review, responses={409: {"description": "Closed"}})
async def review_emergency_access(
    review_id: Annotated[str, Path(max_length=120)],
    verdict: ReviewVerdict,
    principal: CurrentPrincipal,
    policy: Policy,
    queue: Queue,
) -> Review | Response:
    """Record the verdict on one break-glass access (once)."""
    review = await queue.find(review_id)
    # the policy is asked before anything about the review is revealed (even its absence)
    patient = review.patient if review is not None else None
    await policy.enforce(
        principal, "write", ResourceRef(type="AccessReview", patient=patient), AUDIT
    )
    if review is None:
        raise NotFound("no such review")
    closed = await queue.close(review, verdict, principal.id)
    readable = ResourceRef(type="AuditEvent", patient=closed.patient)
    if await policy.read_back(principal, readable, AUDIT) is None:
        return written_unread(200, {"id": closed.id})
    return closed
