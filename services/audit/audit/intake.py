"""Intake of OPA's decision-log uploads (gzip-compressed JSON arrays), idempotent on decision id.

Only OPA may upload: it presents the shared upload token as a bearer credential. The mask
policy in OPA has already erased clinical content; the store keeps an allow-list of the rest
(identifiers, outcome, basis) and chains every entry (see ``store``).
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import Field

from akson_common.errors import BadRequest, Unauthorized
from akson_common.settings import ServiceSettings
from audit.completeness import Reconciler
from audit.store import DecisionStore

log = logging.getLogger("akson.audit.intake")
router = APIRouter(tags=["decision logs"])
MAX_UPLOAD_BYTES = 32 * 1024 * 1024


class AuditSettings(ServiceSettings):
    audit_upload_token: str = ""
    # a checkpoint (position, hash) every this many records
    checkpoint_every: int = Field(default=1000, ge=1)
    # AKSON_AUDIT_RETENTION_DAYS: decisions older than this are pruned by whole checkpoint
    # segments (`akson-audit prune`); 0 keeps everything
    retention_days: int = Field(default=0, ge=0)
    # double recording: an id seen on one side only this long after it arrived is a gap
    reconcile_grace_seconds: float = Field(default=120.0, gt=0)
    reconcile_interval_seconds: float = Field(default=10.0, gt=0)


@router.post(
    "/opa/decision-logs",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        400: {"description": "Not a decision-log batch"},
        401: {"description": "Not the policy engine"},
    },
)
async def receive_decision_logs(
    request: Request,
    authorization: Annotated[str, Header()] = "",
    content_encoding: Annotated[str, Header()] = "",
) -> Response:
    settings: AuditSettings = request.app.state.platform.settings
    expected = f"Bearer {settings.audit_upload_token}"
    if not settings.audit_upload_token or not hmac.compare_digest(authorization, expected):
        raise Unauthorized("decision logs are accepted from the policy engine only")
    raw = await request.body()
    try:
        if content_encoding == "gzip" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        batch = json.loads(raw)
    except (OSError, EOFError, ValueError):
        raise BadRequest("the body is not a (gzip-compressed) JSON array") from None
    if not isinstance(batch, list) or not all(
        isinstance(e, dict) and isinstance(e.get("decision_id"), str) for e in batch
    ):
        raise BadRequest("every entry needs a decision_id")
    store: DecisionStore = request.app.state.decisions
    new_ids: list[str] = []
    stored = await store.append(batch, new_ids)
    # then the reconciliation queue: a crash in between leaves the decision in the chain,
    # where the reconciler looks too, so nothing is reported missing that is stored
    reconciler: Reconciler = request.app.state.reconciler
    await reconciler.logged_now(new_ids)
    log.info("decision logs received", extra={"received": len(batch), "stored": stored})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
