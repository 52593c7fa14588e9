"""Integrations HTTP API for operators (system clients), every call through the policy first.

- ``GET /reconciliation?date=&unit=``: per day and unit, the distinct events received against
  the timesheet entries and orders pending, exported and refused, and the exported files;
- ``GET /dead-letters?after=&limit=``: refused exports, oldest id first (keyset paging), with
  the policy's reasons and violations and the payload with the flagged values withheld.

Both are searches over resource type ``IntegrationExport`` (scope ``IntegrationExport.search``
for system clients, purpose ``operations``); nothing here is health data, yet the answer of
``akson.authz`` is still what lets a caller in.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal
from akson_common.errors import PROTECTED_RESPONSES
from integrations.models import DeadLetterPage, Reconciliation
from integrations.reports import Reports

router = APIRouter(tags=["integrations"], responses=PROTECTED_RESPONSES)

ReportsDep = Annotated[Reports, Depends(state_dependency("reports", Reports))]


@router.get("/reconciliation", response_model=Reconciliation)
async def reconciliation(
    day: Annotated[date, Query(alias="date")],
    principal: CurrentPrincipal,
    reports: ReportsDep,
    unit: Annotated[str | None, Query(max_length=40)] = None,
) -> Reconciliation:
    """Events received vs lines and orders exported, per unit, on one day."""
    return await reports.reconciliation(principal, day, unit)


@router.get("/dead-letters", response_model=DeadLetterPage)
async def dead_letters(
    principal: CurrentPrincipal,
    reports: ReportsDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeadLetterPage:
    """Exports the minimisation policy refused: never sent, kept here with its reasons."""
    return await reports.dead_letters(principal, after, limit)
