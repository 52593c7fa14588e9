"""A test peer standing in for off-platform EHRs (a hospital, a GP with their own system): the
URL the ``message-transport`` binding points to when the runner starts the platform locally.

It is a real HTTP server (uvicorn), reachable only through the binding like the national
exchange would be. Messages arrive at ``POST /her/{her_id}``, one path per addressed party;
what each party does is set through ``PUT /admin/parties/{her_id}`` (tests, or by hand):

- ``ok`` (default): 200, then an application receipt (AppRec) OK back to messaging;
- ``apprec_error``: 200, then an AppRec rejecting the message, with a reason;
- ``accepted``: 202 (taken over for later delivery), then an AppRec OK;
- ``slow``: waits ``delay_seconds`` before answering as ``ok``;
- ``error``: 500 with an OperationOutcome (a failing EHR) — retried by messaging;
- ``reject``: 400 with an OperationOutcome (a permanent refusal);
- ``silent``: 200 and never a receipt.

Receipts go to ``MESSAGE_PEER_REPLY_URL`` (messaging's ``POST /messages/inbound``) with the
inbound token, retried while messaging is away. ``GET /admin/received`` lists what arrived
(the messages' ids and codes only). Run: ``uvicorn message_peer:app --app-dir infra/local``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

log = logging.getLogger("message-peer")
HER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.2"
EVENT_SYSTEM = "urn:akson:message-event"
REPLY_URL = os.environ.get("MESSAGE_PEER_REPLY_URL", "")
REPLY_TOKEN = os.environ.get("MESSAGE_PEER_REPLY_TOKEN", "")
REPLY_ATTEMPTS = 120
REPLY_INTERVAL_SECONDS = 0.5
# an EHR answers the transport first and sends its AppRec after processing the message
PROCESSING_SECONDS = 0.3

Mode = Literal["ok", "apprec_error", "accepted", "slow", "error", "reject", "silent"]


class PartyBehaviour(BaseModel):
    mode: Mode = "ok"
    delay_seconds: float = 0.0
    reason: str = "simulated EHR failure"


app = FastAPI(title="Akson test message peer")
parties: dict[str, PartyBehaviour] = {}
received: list[dict[str, Any]] = []
receipts_sent: list[dict[str, Any]] = []
_background: set[asyncio.Task[None]] = set()


def _outcome(severity: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": "processing", "diagnostics": text}],
    }


def _apprec(her_id: str, reply_to_her: str, in_reply_to: str, reason: str | None) -> dict[str, Any]:
    apprec_id = str(uuid.uuid4())
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": apprec_id,
        "eventCoding": {"system": EVENT_SYSTEM, "code": "AppRec"},
        "source": {"endpoint": f"her:{her_id}"},
        "sender": {"identifier": {"system": HER_SYSTEM, "value": her_id}},
        "destination": [
            {
                "endpoint": f"her:{reply_to_her}",
                "receiver": {"identifier": {"system": HER_SYSTEM, "value": reply_to_her}},
            }
        ],
        "response": {"identifier": in_reply_to, "code": "ok" if reason is None else "fatal-error"},
    }
    entries: list[dict[str, Any]] = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": header}]
    if reason is not None:
        outcome_url = f"urn:uuid:{uuid.uuid4()}"
        header["response"]["details"] = {"reference": outcome_url}
        entries.append({"fullUrl": outcome_url, "resource": _outcome("error", reason)})
    return {
        "resourceType": "Bundle",
        "id": apprec_id,
        "type": "message",
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": entries,
    }


async def _reply(bundle: dict[str, Any], in_reply_to: str) -> None:
    await asyncio.sleep(PROCESSING_SECONDS)
    async with httpx.AsyncClient(timeout=5.0) as client:
        for _ in range(REPLY_ATTEMPTS):
            try:
                answer = await client.post(
                    REPLY_URL,
                    json=bundle,
                    headers={
                        "authorization": f"Bearer {REPLY_TOKEN}",
                        "content-type": "application/fhir+json",
                    },
                )
                if answer.status_code < 500:
                    receipts_sent.append(
                        {"apprec_id": bundle["id"], "in_reply_to": in_reply_to,
                         "status_code": answer.status_code}
                    )  # fmt: skip
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(REPLY_INTERVAL_SECONDS)
    log.warning("receipt for %s never delivered", in_reply_to)


def _header_facts(bundle: Any) -> dict[str, Any]:
    try:
        header = bundle["entry"][0]["resource"]
        sender = header["sender"]["identifier"]["value"]
    except (KeyError, IndexError, TypeError):
        return {}
    response = header.get("response") or {}
    return {
        "message_id": header.get("id"),
        "event": (header.get("eventCoding") or {}).get("code"),
        "sender_her_id": sender,
        "in_reply_to": response.get("identifier"),
        "response_code": response.get("code"),
    }


@app.post("/her/{her_id}")
async def deliver(her_id: str, request: Request) -> JSONResponse:
    bundle = await request.json()
    facts = _header_facts(bundle)
    behaviour = parties.get(her_id, PartyBehaviour())
    received.append(
        {**facts, "her_id": her_id, "mode": behaviour.mode, "at": datetime.now(UTC).isoformat()}
    )
    if behaviour.mode == "error":
        return JSONResponse(_outcome("error", behaviour.reason), status_code=500)
    if behaviour.mode == "reject":
        return JSONResponse(_outcome("error", behaviour.reason), status_code=400)
    if behaviour.mode == "slow":
        await asyncio.sleep(behaviour.delay_seconds)
    is_receipt = facts.get("event") == "AppRec"
    if facts.get("message_id") and not is_receipt and behaviour.mode != "silent" and REPLY_URL:
        reason = behaviour.reason if behaviour.mode == "apprec_error" else None
        apprec = _apprec(her_id, facts["sender_her_id"], facts["message_id"], reason)
        task = asyncio.create_task(_reply(apprec, facts["message_id"]))
        _background.add(task)
        task.add_done_callback(_background.discard)
    return JSONResponse({}, status_code=202 if behaviour.mode == "accepted" else 200)


@app.put("/admin/parties/{her_id}")
async def set_behaviour(her_id: str, behaviour: PartyBehaviour) -> PartyBehaviour:
    parties[her_id] = behaviour
    return behaviour


@app.get("/admin/received")
async def list_received(her_id: str | None = None) -> dict[str, Any]:
    return {
        "messages": [m for m in received if her_id in (None, m["her_id"])],
        "receipts_sent": receipts_sent,
    }


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}
