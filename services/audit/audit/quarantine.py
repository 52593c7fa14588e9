"""Quarantine: a decision-log entry the store cannot keep as sent never stops the decision log.

PostgreSQL (under FerretDB) refuses ``\\u0000`` in jsonb; BSON has no lone surrogates, no
integers beyond 64 bits, no ``$``-prefixed or dotted keys. Before this, one such entry made the
whole upload fail, OPA re-sent it forever and no decision of anyone was recorded again.

Now the intake screens every kept record (:func:`screen`). An entry that fails:

- is chained all the same, as an *escaped* record (every unstorable string or key written as
  its JSON escape in ASCII, big numbers as text) flagged ``quarantined`` with the reason (the
  location, never the value): the chain has no hole and auditors find it by patient or actor;
- is kept exactly as received, base64 of its JSON, in ``quarantine`` (``_id`` = its chain id),
  with an ``audit.alert.quarantined`` event through the outbox;
- opens a gap (``gaps``, side ``quarantined``) so the completeness view shows it.

An entry the database refuses for any other reason is quarantined the same way at insert time
(with a minimal chain record, see :func:`refused_record`). Auditors list the quarantine at
``GET /audit/quarantine``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from akson_common.db import Database, insert_new
from akson_common.events import DECISION_QUARANTINED, DecisionQuarantinedV1, cloud_event
from akson_common.guard import INT64_MAX, INT64_MIN, hostile
from akson_common.outbox import Outbox
from audit.completeness import GAPS

log = logging.getLogger("akson.audit.quarantine")

QUARANTINE = "quarantine"
MAX_ID_LENGTH = 200


@dataclass(frozen=True)
class Quarantined:
    chain_id: str
    reason: str
    entry: dict[str, Any]


def _unstorable_key(key: str) -> bool:
    return hostile(key) or key.startswith("$") or "." in key


def screen(value: Any, location: str = "entry") -> str | None:
    """The location of the first value the store cannot keep as it is, if any."""
    if isinstance(value, str):
        return location if hostile(value) else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else location
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else location
    if isinstance(value, dict):
        for key, child in value.items():
            if not isinstance(key, str) or _unstorable_key(key):
                return f"a key in {location}"
            found = screen(child, f"{location}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for index, child in enumerate(value):
            found = screen(child, f"{location}[{index}]")
            if found is not None:
                return found
        return None
    return location


def _escape(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)[1:-1].replace(".", "\\u002e").replace("$", "\\u0024")


def escaped(value: Any) -> Any:
    """``value`` with every unstorable part written so that it can be stored (and hashed)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)[1:-1] if hostile(value) else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, dict):
        return {
            (_escape(str(k)) if not isinstance(k, str) or _unstorable_key(k) else k): escaped(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [escaped(v) for v in value]
    return str(value)


def chain_id(decision_id: str) -> str:
    """The chain id of a decision: its own id, or a digest when that id cannot be an ``_id``."""
    if hostile(decision_id) or len(decision_id) > MAX_ID_LENGTH or not decision_id:
        digest = hashlib.sha256(decision_id.encode("utf-8", "surrogatepass")).hexdigest()
        return f"quarantined-{digest}"
    return decision_id


def quarantined_record(record: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**escaped(record), "quarantined": True, "quarantine_reason": reason}


def refused_record(decision_id: str, reason: str) -> dict[str, Any]:
    """The chain record of an entry the database refused even escaped: its id and the reason."""
    return {"decision_id": _escape(decision_id), "quarantined": True, "quarantine_reason": reason}


def _raw(entry: dict[str, Any]) -> str:
    text = json.dumps(entry, ensure_ascii=True, default=str, allow_nan=True)
    return base64.b64encode(text.encode("ascii")).decode("ascii")


class Quarantine:
    def __init__(self, database: Database, outbox: Outbox) -> None:
        self.database = database
        self.outbox = outbox
        self.entries = database.collection(QUARANTINE)
        outbox.track(QUARANTINE)

    async def keep(self, items: list[Quarantined]) -> None:
        """Keep each entry, alert and open its gap; idempotent (OPA may re-send a batch)."""
        if not items:
            return
        now = datetime.now(UTC)
        documents = []
        for item in items:
            payload = DecisionQuarantinedV1(
                decision_id=item.chain_id, reason=item.reason, quarantined_at=now
            )
            event = cloud_event(
                DECISION_QUARANTINED, payload, source="audit", subject=item.chain_id
            )
            document = {
                "_id": item.chain_id,
                "reason": item.reason,
                "entry_json_base64": _raw(item.entry),
                "quarantined_at": now,
            }
            documents.append((document, [event]))
        await self.outbox.insert_many(QUARANTINE, documents)
        await insert_new(
            self.database.collection(GAPS),
            [
                {
                    "_id": item.chain_id,
                    "side": "quarantined",
                    "service": None,
                    "allow": None,
                    "status": "open",
                    "detected_at": now,
                    "resolved_at": None,
                }
                for item in items
            ],
        )
        log.warning(
            "decision-log entries quarantined",
            extra={"count": len(items), "reasons": sorted({i.reason for i in items})},
        )

    async def list(self, limit: int) -> list[dict[str, Any]]:
        cursor = self.entries.find({}, {"_outbox": 0}).sort("quarantined_at", -1)
        return await cursor.limit(limit).to_list(None)
