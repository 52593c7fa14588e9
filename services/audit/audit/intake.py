"""Intake of OPA's decision-log uploads (gzip-compressed JSON arrays), idempotent on decision id.

Only OPA may upload: it presents the shared upload token as a bearer credential. The mask
policy in OPA has already erased clinical content; the store keeps an allow-list of the rest
(identifiers, outcome, basis) and chains every entry (see ``store``).
"""

from __future__ import annotations

import hmac
import json
import logging
import zlib
from typing import Any

from akson_common.errors import BadRequest, Unauthorized
from akson_common.guard import json_depth_exceeds
from audit.completeness import Reconciler
from audit.quarantine import Quarantine, Quarantined
from audit.settings import AuditSettings
from audit.store import DecisionStore, prepare

log = logging.getLogger("akson.audit.intake")
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
# OPA's entries nest a few levels (input.context.care_relations[i]); far below this
MAX_DEPTH = 64


class Intake:
    """OPA's uploads into the chain: screened, stored, queued for reconciliation."""

    def __init__(
        self,
        settings: AuditSettings,
        store: DecisionStore,
        quarantine: Quarantine,
        reconciler: Reconciler,
    ) -> None:
        self.settings = settings
        self.store = store
        self.quarantine = quarantine
        self.reconciler = reconciler

    async def receive(self, raw: bytes, authorization: str, content_encoding: str) -> None:
        """Store one upload (``authorization``: OPA's bearer credential)."""
        token = self.settings.audit_upload_token
        if not token or not hmac.compare_digest(authorization, f"Bearer {token}"):
            raise Unauthorized("decision logs are accepted from the policy engine only")
        batch = _batch(raw, content_encoding)
        pending, quarantined = prepare(batch)
        # the originals first: a crash before the chain leaves them kept, and OPA re-sends
        await self.quarantine.keep(quarantined)
        new_ids: list[str] = []
        refused: list[Quarantined] = []
        stored = await self.store.append_prepared(pending, new_ids, refused)
        await self.quarantine.keep(refused)
        # then the reconciliation queue: a crash in between leaves the decision in the chain,
        # where the reconciler looks too, so nothing is reported missing that is stored
        await self.reconciler.logged_now(new_ids)
        log.info(
            "decision logs received",
            extra={
                "received": len(batch),
                "stored": stored,
                "quarantined": len(quarantined) + len(refused),
            },
        )


def _batch(raw: bytes, content_encoding: str) -> list[dict[str, Any]]:
    """The upload's entries, each with a decision id; a 400 for anything else."""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise BadRequest("the upload is too large")
    try:
        if content_encoding == "gzip" or raw[:2] == b"\x1f\x8b":
            raw = _gunzip(raw)
        # bounded before parsing (Python's parser recurses); entries are screened one by one
        if json_depth_exceeds(raw, MAX_DEPTH):
            raise ValueError("too deep")
        batch = json.loads(raw, parse_int=_int)
    except (OSError, EOFError, ValueError, RecursionError, zlib.error):
        raise BadRequest("the body is not a (gzip-compressed) JSON array") from None
    if not isinstance(batch, list) or not all(
        isinstance(e, dict) and isinstance(e.get("decision_id"), str) for e in batch
    ):
        raise BadRequest("every entry needs a decision_id")
    return batch


def _int(text: str) -> int | float:
    # beyond Python's digit limit (a ValueError for the whole batch): infinite, so the entry
    # carrying it is quarantined rather than the upload refused
    return int(text) if len(text) <= 40 else float("inf")


def _gunzip(raw: bytes) -> bytes:
    """Decompress, refusing more than ``MAX_UPLOAD_BYTES`` of output (a gzip bomb)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(raw, MAX_UPLOAD_BYTES + 1)
    if len(out) > MAX_UPLOAD_BYTES or inflater.unconsumed_tail:
        raise ValueError("decompressed upload too large")
    return out
