"""The audit service's reads and the one write (a review's verdict), each after the policy.

Every call asks the policy first (purpose ``audit``): the decision log, its gaps, quarantine and
signals are type ``DecisionLog``, the emergency-access reviews ``AuditEvent`` (their verdicts
``AccessReview``), the citizen's own access log ``AccessLog``. OPA logs those decisions like any
other, so auditors' own queries are in the log too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from akson_common.auth import Principal
from akson_common.db import Document
from akson_common.errors import NotFound
from akson_common.policy import Action, PolicyContext, PolicyEnforcementPoint, ResourceRef
from audit.completeness import Reconciler
from audit.directory import Directory
from audit.models import (
    AccessView,
    DecisionFilter,
    DecisionView,
    GapPage,
    GapView,
    QuarantinedView,
    QuarantinePage,
    Review,
    ReviewPage,
    ReviewVerdict,
    SignalPage,
    SignalQuery,
    VerifyResult,
    view,
)
from audit.quarantine import Quarantine
from audit.reviews import ReviewQueue
from audit.signals import AUDIT_TYPES, examine
from audit.store import DecisionStore

AUDIT = PolicyContext(purpose="audit")


@dataclass
class Page:
    """A page of views and the position the next one starts before (None: the last page)."""

    items: list[Any]
    before: int | None


class AuditLog:
    def __init__(
        self,
        pep: PolicyEnforcementPoint,
        decisions: DecisionStore,
        directory: Directory,
        reconciler: Reconciler,
        quarantine: Quarantine,
        reviews: ReviewQueue,
    ) -> None:
        self.pep = pep
        self.decisions = decisions
        self.directory = directory
        self.reconciler = reconciler
        self.quarantine = quarantine
        self.reviews = reviews

    async def _ask(
        self,
        principal: Principal,
        action: Action,
        patient: str | None = None,
        resource_type: str = "DecisionLog",
    ) -> None:
        resource = ResourceRef(type=resource_type, patient=patient)
        await self.pep.enforce(principal, action, resource, AUDIT)

    # -- the decision log -----------------------------------------------------------------------

    async def search(
        self, principal: Principal, query: DecisionFilter, count: int, cursor: int | None
    ) -> Page:
        """Decisions matching every given filter, newest first."""
        await self._ask(principal, "search", query.patient)
        documents, before = await self.decisions.page(query.selector(), limit=count, before=cursor)
        return Page([view(d) for d in documents], before)

    async def export(self, principal: Principal, query: DecisionFilter) -> AsyncIterator[Document]:
        """Every matching decision, newest first (asked before the first is read)."""
        await self._ask(principal, "search", query.patient)
        return self.decisions.stream(query.selector())

    async def decision(self, principal: Principal, decision_id: str) -> DecisionView:
        await self._ask(principal, "read")
        document = await self.decisions.one(decision_id)
        if document is None:
            raise NotFound("no such decision")
        return view(document)

    async def verify(self, principal: Principal) -> VerifyResult:
        """Recompute the whole chain (it reads every record: an operator's tool)."""
        await self._ask(principal, "read")
        report = await self.decisions.verify()
        return VerifyResult(
            intact=report.intact,
            checked=report.checked,
            start=report.start,
            last_position=report.last_position,
            checkpoints_checked=report.checkpoints_checked,
            first_bad_position=report.finding.position if report.finding else None,
            problem=report.finding.problem if report.finding else None,
            message=report.summary(),
        )

    # -- completeness, quarantine, signals --------------------------------------------------------

    async def gaps(
        self, principal: Principal, status: Literal["open", "resolved"] | None, count: int
    ) -> GapPage:
        await self._ask(principal, "search")
        return GapPage(items=[GapView.of(d) for d in await self.reconciler.list(status, count)])

    async def quarantined(self, principal: Principal, count: int) -> QuarantinePage:
        await self._ask(principal, "search")
        documents = await self.quarantine.list(count)
        return QuarantinePage(items=[QuarantinedView.of(d) for d in documents])

    async def signals(self, principal: Principal, query: SignalQuery) -> SignalPage:
        await self._ask(principal, "search")
        return await examine(self.decisions, query)

    # -- emergency-access reviews -----------------------------------------------------------------

    async def open_reviews(
        self,
        principal: Principal,
        status: Literal["open", "closed"] | None,
        patient: str | None,
        count: int,
    ) -> ReviewPage:
        await self._ask(principal, "search", patient, "AuditEvent")
        return ReviewPage(items=await self.reviews.list(status, patient, count))

    async def review(
        self, principal: Principal, review_id: str, verdict: ReviewVerdict
    ) -> tuple[Review, bool]:
        """Record the verdict (once); the review, and whether the reviewer may read it back."""
        review = await self.reviews.find(review_id)
        # the policy is asked before anything about the review is revealed (even its absence)
        await self._ask(principal, "write", review.patient if review else None, "AccessReview")
        if review is None:
            raise NotFound("no such review")
        closed = await self.reviews.close(review, verdict, principal.id)
        readable = ResourceRef(type="AuditEvent", patient=closed.patient)
        return closed, await self.pep.read_back(principal, readable, AUDIT) is not None

    # -- the citizen's access log -----------------------------------------------------------------

    async def access_log(self, principal: Principal, count: int, cursor: int | None) -> Page:
        """Who accessed the citizen's record (allowed accesses by others; not her own, not
        audit queries), newest first. No clinical content: the kind of record and the basis."""
        await self._ask(principal, "read", principal.id, "AccessLog")
        # audit data: an auditor's query or review verdict is not an access to her record (a
        # review of an emergency access named her as its patient)
        documents, before = await self.decisions.access_log(
            principal.id, AUDIT_TYPES, limit=count, before=cursor
        )
        views = [view(document) for document in documents]
        people = await self.directory.practitioner_names(v.hpr for v in views)
        places = await self.directory.organisation_names(
            [*(v.organisation for v in views), *(v.unit for v in views)]
        )
        return Page([AccessView.of(v, people, places) for v in views], before)
