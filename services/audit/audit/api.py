"""The audit service's routes: the auditors' API (query and export the decision log, verify the
chain, the completeness gaps, the quarantine, the snooping signals, the emergency-access
reviews), the citizen's access log, and the intake of OPA's decision logs.

Routes translate HTTP only; the policy is asked in ``audit.service``. The decision log is
read-only here: PUT, PATCH and DELETE on its paths answer 405.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal
from akson_common.errors import PROTECTED_RESPONSES, MethodNotAllowed
from akson_common.guard import INT64_MAX
from akson_common.policy import written_unread
from audit.intake import Intake
from audit.models import (
    AccessPage,
    DecisionFilter,
    DecisionPage,
    DecisionView,
    GapPage,
    QuarantinePage,
    Review,
    ReviewPage,
    ReviewVerdict,
    SignalPage,
    SignalQuery,
    VerifyResult,
    view,
)
from audit.service import AuditLog, Page

router = APIRouter(prefix="/audit", tags=["audit"], responses=PROTECTED_RESPONSES)
completeness_router = APIRouter(
    prefix="/audit", tags=["completeness"], responses=PROTECTED_RESPONSES
)
signals_router = APIRouter(
    prefix="/audit", tags=["snooping signals"], responses=PROTECTED_RESPONSES
)
reviews_router = APIRouter(
    prefix="/audit/reviews", tags=["emergency reviews"], responses=PROTECTED_RESPONSES
)
citizen_router = APIRouter(prefix="/audit", tags=["access log"], responses=PROTECTED_RESPONSES)
intake_router = APIRouter(tags=["decision logs"])
NDJSON = "application/x-ndjson"

Audit = Annotated[AuditLog, Depends(state_dependency("audit_log", AuditLog))]
IntakeDep = Annotated[Intake, Depends(state_dependency("intake", Intake))]
Identifier = Annotated[str | None, Query(min_length=1, max_length=80)]
Count = Annotated[int, Query(alias="_count", ge=1, le=1000)]
Cursor = Annotated[int | None, Query(ge=1, le=INT64_MAX)]


async def decision_filter(
    patient: Identifier = None,
    practitioner: Annotated[str | None, Query(pattern=r"^\d{1,9}$")] = None,
    actor: Identifier = None,
    organisation: Annotated[str | None, Query(pattern=r"^[\w-]{1,40}$")] = None,
    municipality: Annotated[str | None, Query(pattern=r"^\d{4}$")] = None,
    app: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:-]{1,100}$")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    outcome: Literal["allow", "deny"] | None = None,
    reason: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$")] = None,
    emergency: bool | None = None,
    resource_type: Annotated[str | None, Query(pattern=r"^[A-Za-z]{1,64}$")] = None,
) -> DecisionFilter:
    return DecisionFilter(
        patient=patient,
        practitioner=practitioner,
        actor=actor,
        organisation=organisation,
        municipality=municipality,
        app=app,
        from_=from_,
        to=to,
        outcome=outcome,
        reason=reason,
        emergency=emergency,
        resource_type=resource_type,
    )


Filter = Annotated[DecisionFilter, Depends(decision_filter)]


def _next(request: Request, page: Page) -> str | None:
    """The link to the next page (keyset: the position it starts before)."""
    if page.before is None:
        return None
    url = request.url.include_query_params(cursor=page.before)
    return f"{url.path}?{url.query}"


@router.get("/decisions", response_model=DecisionPage)
async def search_decisions(
    request: Request,
    principal: CurrentPrincipal,
    audit: Audit,
    query: Filter,
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> DecisionPage:
    """Decisions matching every given filter, newest first; ``next`` pages on (keyset)."""
    page = await audit.search(principal, query, count, cursor)
    return DecisionPage(items=page.items, next=_next(request, page))


@router.get(
    "/decisions/export",
    responses={200: {"content": {NDJSON: {}, "text/csv": {}}}},
    response_class=StreamingResponse,
)
async def export_decisions(
    principal: CurrentPrincipal,
    audit: Audit,
    query: Filter,
    format: Literal["ndjson", "csv"] = "ndjson",
) -> StreamingResponse:
    """Every matching decision, newest first, streamed as NDJSON or CSV."""
    documents = await audit.export(principal, query)
    if format == "csv":
        return StreamingResponse(
            _csv(documents),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="decisions.csv"'},
        )
    return StreamingResponse(_ndjson(documents), media_type=NDJSON)


CSV_COLUMNS = [
    name
    for name in DecisionView.model_fields
    if name not in {"care_relations"}  # nested: in NDJSON only
]


async def _ndjson(documents: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for document in documents:
        yield (json.dumps(view(document).model_dump(mode="json")) + "\n").encode()


async def _csv(documents: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    async for document in documents:
        row = view(document).model_dump(mode="json")
        row["reasons"] = " ".join(row["reasons"])
        row["obligations"] = " ".join(row["obligations"])
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


@router.get("/decisions/{decision_id}", response_model=DecisionView)
async def get_decision(
    decision_id: Annotated[str, Path(max_length=80)], principal: CurrentPrincipal, audit: Audit
) -> DecisionView:
    return await audit.decision(principal, decision_id)


@router.get("/chain/verify", response_model=VerifyResult)
async def verify_chain(principal: CurrentPrincipal, audit: Audit) -> VerifyResult:
    """Recompute the whole chain (it reads every record: an operator's tool, not a hot path)."""
    return await audit.verify(principal)


# The log is append-only: say so explicitly rather than with a bare routing error.
for path in ("/decisions", "/decisions/{decision_id}", "/chain/verify"):

    @router.api_route(
        path,
        methods=["POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    async def refuse_change(request: Request) -> None:
        raise MethodNotAllowed(
            "the decision log is append-only: records cannot be created, changed or deleted "
            "through the API",
            headers={"Allow": "GET"},
        )


@completeness_router.get("/gaps", response_model=GapPage)
async def list_gaps(
    principal: CurrentPrincipal,
    audit: Audit,
    status: Literal["open", "resolved"] | None = None,
    count: Count = 100,
) -> GapPage:
    """Decisions seen on one side of the double recording only (newest first): ``enforced_only``
    (OPA's log lost it) or ``logged_only`` (no enforcement point reported it); ``resolved`` when
    the missing side arrived late."""
    return await audit.gaps(principal, status, count)


@completeness_router.get("/quarantine", response_model=QuarantinePage)
async def list_quarantine(
    principal: CurrentPrincipal, audit: Audit, count: Count = 100
) -> QuarantinePage:
    """Decision-log entries kept in quarantine (newest first): chained as escaped records
    flagged ``quarantined``; here as received (base64 of their JSON) with the reason."""
    return await audit.quarantined(principal, count)


@signals_router.get("/signals", response_model=SignalPage)
async def snooping_signals(
    principal: CurrentPrincipal, audit: Audit, query: Annotated[SignalQuery, Query()]
) -> SignalPage:
    """Flags for review over ``day`` (default today, UTC) and the ``baseline_days`` before it;
    each says which rule fired and the numbers behind it."""
    return await audit.signals(principal, query)


@reviews_router.get("", response_model=ReviewPage)
async def list_reviews(
    principal: CurrentPrincipal,
    audit: Audit,
    status: Literal["open", "closed"] | None = None,
    patient: Identifier = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 100,
) -> ReviewPage:
    """Break-glass accesses to review (``status=open``) or reviewed, newest first."""
    return await audit.open_reviews(principal, status, patient, count)


@reviews_router.post(
    "/{review_id}", response_model=Review, responses={409: {"description": "Closed"}}
)
async def review_emergency_access(
    review_id: Annotated[str, Path(max_length=120)],
    verdict: ReviewVerdict,
    principal: CurrentPrincipal,
    audit: Audit,
) -> Review | Response:
    """Record the verdict on one break-glass access (once)."""
    closed, readable = await audit.review(principal, review_id, verdict)
    return closed if readable else written_unread(200, {"id": closed.id})


@citizen_router.get("/access-log", response_model=AccessPage)
async def my_access_log(
    request: Request,
    principal: CurrentPrincipal,
    audit: Audit,
    count: Annotated[int, Query(alias="_count", ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> AccessPage:
    """Who accessed my record (allowed accesses by others; not my own, not audit queries),
    newest first. No clinical content: the kind of record and the basis only."""
    page = await audit.access_log(principal, count, cursor)
    return AccessPage(items=page.items, next=_next(request, page))


@intake_router.post(
    "/opa/decision-logs",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        400: {"description": "Not a decision-log batch"},
        401: {"description": "Not the policy engine"},
    },
)
async def receive_decision_logs(
    request: Request,
    intake: IntakeDep,
    authorization: Annotated[str, Header()] = "",
    content_encoding: Annotated[str, Header()] = "",
) -> Response:
    """OPA's decision-log upload (a gzip-compressed JSON array), from OPA only."""
    await intake.receive(await request.body(), authorization, content_encoding)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
