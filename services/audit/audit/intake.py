"""Intake of OPA's decision-log uploads (gzip-compressed JSON arrays), idempotent on decision id.

Only OPA may upload: it presents the shared upload token as a bearer credential. The mask
policy in OPA has already erased clinical content; identifiers and outcomes are kept.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from pymongo import InsertOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from akson_common.db import Document
from akson_common.errors import BadRequest, Unauthorized
from akson_common.settings import ServiceSettings

log = logging.getLogger("akson.audit.intake")
router = APIRouter(tags=["decision logs"])
DECISIONS = "decisions"
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
DUPLICATE_KEY = 11000


class AuditSettings(ServiceSettings):
    audit_upload_token: str = ""


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
    stored = await store_decisions(request.app.state.platform.database.collection(DECISIONS), batch)
    log.info("decision logs received", extra={"received": len(batch), "stored": stored})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def store_decisions(
    collection: AsyncCollection[Document], batch: list[dict[str, Any]]
) -> int:
    """Insert each entry once; a re-sent entry (same decision id) is ignored."""
    if not batch:
        return 0
    received_at = datetime.now(UTC)
    operations = [
        InsertOne({"_id": entry["decision_id"], "received_at": received_at, "entry": entry})
        for entry in batch
    ]
    try:
        result = await collection.bulk_write(operations, ordered=False)
        return int(result.inserted_count)
    except BulkWriteError as error:
        write_errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in write_errors):
            raise
        return int(error.details.get("nInserted", 0))
