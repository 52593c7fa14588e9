"""Completeness of the decision log by double recording, on the real stack.

Every enforcement point reports the decision ids it enforced (``policy.decision.enforced``);
audit reconciles them with OPA's decision-log uploads and reports any id seen on one side only
after the grace period (10 s in the runner) as a gap (``gaps``, ``GET /audit/gaps``,
``audit.alert.gap``). Nothing may be silently missing:

- audit (app and sidecar) stopped during a burst of journal reads: OPA buffers its log and
  retries, Dapr keeps the enforcement reports in the stream, so after recovery every decision is
  stored and reconciled, and none is reported as a gap;
- OPA made to really drop log entries (restarted with a decision-log buffer of two events while
  audit is down: OPA's event buffer drops the oldest once full): the dropped decisions are
  reported as gaps, with their ``audit.alert.gap`` events.

The stack is shared: both tests restart what they stopped, and OPA gets its normal
configuration back.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Platform, eventually
from tests.integration.test_audit import auditor
from tests.integration.test_foundation import document_reference, gp_headers
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

GRACE = 10  # AKSON_AUDIT_RECONCILE_GRACE_SECONDS in the runner


def recorded_document(http: httpx.Client, platform: Platform, patient: str, hpr: str) -> str:
    platform.relate(patient, hpr=hpr)
    created = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        json=document_reference(patient),
        headers=gp_headers(platform, hpr),
    )
    assert created.status_code == 201, created.text
    return f"{platform.url('journal')}{created.headers['location']}"


def read_once(http: httpx.Client, url: str, headers: dict[str, str]) -> list[str]:
    response = http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return [i for i in response.headers["akson-decision-id"].split(",") if i]


def where(platform: Platform, ids: list[str]) -> dict[str, set[str]]:
    """Which of ``ids`` are stored, reported as a gap, or still pending on either side."""
    db = platform.db("audit")

    def found(collection: str, **extra: Any) -> set[str]:
        return {d["_id"] for d in db[collection].find({"_id": {"$in": ids}, **extra}, {"_id": 1})}

    return {
        "stored": found("decisions"),
        "gaps": found("gaps"),
        "pending": found("enforced") | found("logged"),
    }


@contextmanager
def audit_down(platform: Platform) -> Iterator[None]:
    platform.stack.stop("audit-dapr")
    platform.stack.stop("audit-app")
    try:
        yield
    finally:
        platform.stack.start("audit-app")
        platform.stack.start("audit-dapr")


def test_decisions_taken_while_audit_is_down_are_all_stored_and_reconciled(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144961"
    url = recorded_document(http, platform, patient, hpr)
    headers = gp_headers(platform, hpr)
    taken: list[str] = []
    stop = threading.Event()
    failures: list[str] = []

    def burst() -> None:
        with httpx.Client(timeout=10.0) as client:
            while not stop.is_set():
                try:
                    taken.extend(read_once(client, url, headers))
                except AssertionError as error:  # pragma: no cover - reported below
                    failures.append(str(error))
                time.sleep(0.02)

    reader = threading.Thread(target=burst)
    reader.start()
    try:
        time.sleep(1.0)
        before = len(taken)
        with audit_down(platform):
            time.sleep(4.0)  # reads go on while audit (app and sidecar) is down
            during = len(taken) - before
        time.sleep(2.0)
    finally:
        stop.set()
        reader.join()
    assert not failures, failures[:3]
    assert before > 0 and during > 10, (before, during)

    def reconciled() -> dict[str, set[str]] | None:
        state = where(platform, taken)
        accounted = state["stored"] | state["gaps"]
        return state if accounted >= set(taken) and not state["pending"] else None

    # after recovery: every decision the journal returned is stored or reported (none silent),
    # and both sides were reconciled (nothing left pending)
    state = eventually(reconciled, timeout=GRACE + 60, interval=1.0)
    # OPA buffered and retried, the enforcement reports waited in the stream: nothing was lost
    assert state["stored"] == set(taken), f"not stored: {set(taken) - state['stored']}"
    # a side that arrived later than the grace period (OPA's upload backoff after the outage)
    # may have been reported as a gap meanwhile: then it must be resolved, never left open
    db = platform.db("audit")

    def open_gaps() -> list[dict[str, Any]]:
        return list(db.gaps.find({"_id": {"$in": taken}, "status": "open"}, {"_outbox": 0}))

    try:
        eventually(lambda: not open_gaps(), timeout=GRACE + 30, interval=1.0)
    except AssertionError:
        gaps = open_gaps()
        sides = {g["side"] for g in gaps}
        raise AssertionError(f"{len(gaps)} gaps left open, sides {sides}: {gaps[:2]}") from None


def tiny_buffer_config(platform: Platform) -> Path:
    """OPA's local configuration with a decision-log buffer of two events."""
    original = Path(
        next(a for a in platform.stack.processes["opa"].argv if a.endswith("config.yaml"))
    )
    text, replaced = re.subn(
        r"buffer_size_limit_bytes: \d+",
        "buffer_type: event\n    buffer_size_limit_events: 2",
        original.read_text(),
    )
    assert replaced == 1
    tiny = platform.stack.run_dir / "opa-tiny-buffer.yaml"
    tiny.write_text(text)
    return tiny


@contextmanager
def opa_with_config(platform: Platform, config: Path) -> Iterator[None]:
    process = platform.stack.processes["opa"]
    original = list(process.argv)
    at = next(i for i, a in enumerate(original) if a.endswith("config.yaml"))
    platform.stack.stop("opa")
    process.argv = [*original[:at], str(config), *original[at + 1 :]]
    try:
        platform.stack.start("opa")
        yield
    finally:
        platform.stack.stop("opa")
        process.argv = original
        platform.stack.start("opa")


def test_decisions_opa_dropped_from_its_log_are_reported_as_gaps(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144962"
    url = recorded_document(http, platform, patient, hpr)
    headers = gp_headers(platform, hpr)
    reads = 12
    taken: list[str] = []
    tiny = tiny_buffer_config(platform)
    with opa_with_config(platform, tiny):
        with audit_down(platform):
            # audit unreachable: OPA buffers at most two events and drops the oldest
            for _ in range(reads):
                taken.extend(read_once(http, url, headers))
                time.sleep(0.05)
            time.sleep(3.0)  # a few failed upload attempts
        # audit is back: OPA uploads what its buffer kept
        eventually(lambda: where(platform, taken)["stored"], timeout=15)
    # OPA is back on its normal configuration
    assert len(taken) >= reads

    def settled() -> dict[str, set[str]] | None:
        state = where(platform, taken)
        accounted = state["stored"] | state["gaps"]
        return state if accounted >= set(taken) and not state["pending"] else None

    state = eventually(settled, timeout=GRACE + 60, interval=1.0)
    dropped = set(taken) - state["stored"]
    # OPA really dropped entries (at most two of the twelve survive its buffer) ...
    assert len(dropped) >= reads - 2, (len(dropped), len(taken))
    assert state["stored"], "the newest entries OPA kept are stored"
    # ... and every one of them is reported, none silently missing
    assert dropped == state["gaps"]
    db = platform.db("audit")
    gaps = {d["_id"]: d for d in db.gaps.find({"_id": {"$in": sorted(dropped)}})}
    assert all(g["side"] == "enforced_only" and g["status"] == "open" for g in gaps.values())
    assert {g["service"] for g in gaps.values()} == {"journal"}

    # the alerts: one per dropped decision on audit.alert.gap, identifiers only
    def alerted() -> dict[str, dict[str, Any]] | None:
        events = [e for e in platform.events("audit.alert.gap") if e["subject"] in dropped]
        by_id = {e["data"]["decision_id"]: e for e in events}
        return by_id if set(by_id) == dropped else None

    alerts = eventually(alerted, timeout=20)
    counted = [e for e in platform.events("audit.alert.gap") if e["subject"] in dropped]
    assert len(counted) == len(dropped), "one alert per gap, never repeated"
    sample = next(iter(alerts.values()))["data"]
    assert set(sample) == {
        "decision_id",
        "side",
        "service",
        "allow",
        "status",
        "detected_at",
        "resolved_at",
    }
    assert sample["side"] == "enforced_only" and sample["allow"] is True

    # auditors see them through the API (the policy: auditors only)
    listed = http.get(
        f"{platform.url('audit')}/audit/gaps",
        params={"status": "open", "_count": 1000},
        headers=auditor(platform),
    )
    assert listed.status_code == 200, listed.text
    assert dropped <= {g["decision_id"] for g in listed.json()["items"]}
    refused = http.get(
        f"{platform.url('audit')}/audit/gaps", headers=gp_headers(platform, hpr, audience="audit")
    )
    assert refused.status_code == 403


def test_a_decision_no_enforcement_point_reported_is_a_gap_until_its_report_arrives(
    platform: Platform, http: httpx.Client
) -> None:
    """OPA logged it, nobody reported enforcing it: ``logged_only`` once the grace has passed;
    the report arriving late (a relay that was away) resolves it."""
    patient = new_patient_id()
    policy_input = {
        "subject": {"id": "akson-dev-auditor", "kind": "system", "roles": ["auditor"]},
        "action": "read",
        "resource": {"type": "DocumentReference", "patient": patient, "category": "general"},
        "context": {"care_relations": []},
    }
    answer = platform.decide(policy_input)
    decision_id = answer["decision_id"]
    gaps = platform.db("audit").gaps
    gap = eventually(lambda: gaps.find_one({"_id": decision_id}), timeout=GRACE + 60, interval=1.0)
    assert (gap["side"], gap["status"]) == ("logged_only", "open")
    assert where(platform, [decision_id])["pending"] == set()

    report = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "akson/journal",
        "type": "policy.decision.enforced.v1",
        "subject": "journal",
        "datacontenttype": "application/json",
        "data": {
            "service": "journal",
            "decisions": [
                {"decision_id": decision_id, "allow": bool(answer["result"]["allow"]),
                 "at": datetime.now(UTC).isoformat()}
            ],
        },
    }  # fmt: skip
    platform.publish("journal", "policy.decision.enforced", report)

    def resolved() -> dict[str, Any] | None:
        found = gaps.find_one({"_id": decision_id, "status": "resolved"})
        return (
            found if found is not None and not where(platform, [decision_id])["pending"] else None
        )

    eventually(resolved, timeout=GRACE + 60, interval=1.0)
    alerts = [e for e in platform.events("audit.alert.gap.resolved") if e["subject"] == decision_id]
    assert len(alerts) == 1


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_a_reconcile_round_killed_between_its_writes_leaves_no_false_gap(
    platform: Platform, crash_at: int
) -> None:
    """make chaos (audit killed -9 while decisions are made) left 103 gaps open for decisions
    stored in the chain and reported enforced: a round had forgotten their enforced side and
    was killed before it forgot their logged side, so the next round saw a logged decision
    nobody enforced. Here the round's ``crash_at``-th delete fails (the kill), then a clean
    round runs: whatever was forgotten first, no gap may be raised. Against the stack's
    FerretDB, in a database of its own."""
    import asyncio
    from datetime import timedelta

    from fastapi import FastAPI

    from akson_common.db import Database
    from akson_common.events import EventPublisher, Subscriptions
    from akson_common.outbox import Outbox
    from audit.completeness import Reconciler
    from audit.events import EVENTS

    class Killed(Exception):
        pass

    async def open_gaps_after_a_crash() -> list[Any]:
        database = Database(platform.endpoints["mongo"]["url"], f"test_rec_{uuid.uuid4().hex}")
        http = httpx.AsyncClient()
        try:
            publisher = EventPublisher(http, "http://127.0.0.1:9", "pubsub")
            outbox = Outbox(database, publisher, 1.0, EVENTS)
            subscriptions = Subscriptions(FastAPI(), database, "pubsub", "")
            reconciler = Reconciler(
                database, subscriptions, outbox, grace_seconds=0, interval_seconds=1
            )
            old = datetime.now(UTC) - timedelta(minutes=1)
            ids = [str(uuid.uuid4()) for _ in range(5)]
            await reconciler.decisions.insert_many([{"_id": i} for i in ids])  # in the chain
            await reconciler.enforced.insert_many(
                [{"_id": i, "service": "journal", "allow": True, "seen_at": old} for i in ids]
            )
            await reconciler.logged.insert_many([{"_id": i, "seen_at": old} for i in ids])
            forget, calls = reconciler._forget, 0

            async def killed_at_the_nth_delete(collection: Any, chosen: Any) -> None:
                nonlocal calls
                calls += 1
                if calls == crash_at:
                    raise Killed
                await forget(collection, chosen)

            reconciler._forget = killed_at_the_nth_delete  # type: ignore[method-assign,assignment]
            try:
                await reconciler.reconcile()
            except Killed:
                pass
            reconciler._forget = forget  # type: ignore[method-assign]
            await reconciler.reconcile()
            await reconciler.reconcile()
            return [g async for g in reconciler.gaps.find({"status": "open"})]
        finally:
            await http.aclose()
            await database.client.drop_database(database.db.name)
            await database.close()

    assert asyncio.run(open_gaps_after_a_crash()) == []
