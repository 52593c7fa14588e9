"""The audit service on the real stack: OPA's decision log → hash-chained store → auditor API.

Tampering is done directly in the database (as an attacker with database access would) and
every tampered record is restored afterwards, so the shared store verifies again.

Needs the issue-4 policy rule "a subject with the auditor role may read/search AuditEvent,
DecisionLog, AccessLog"; the review verdict also needs auditors to *write* AuditEvent.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from akson_common.auth import unverified_claims
from akson_common.db import Database
from audit.store import DecisionStore
from tests.integration.conftest import Platform, eventually
from tests.integration.test_foundation import document_reference, gp_headers
from tests.integration.test_masterdata import DIRECTORY, _hpr_serial, new_org_number, system
from tests.support import new_patient_id

pytestmark = pytest.mark.integration


# Whole-log operations (chain verification, signals) are linear in the log's size, which the
# whole suite grows: they get more than the client's 10 s (an incremental verify is open work).
SLOW = 60.0


def auditor_token(platform: Platform) -> str:
    return platform.token("audit", subject="aud", kind="system", client="auditor", scope="")


def auditor(platform: Platform) -> dict[str, str]:
    return {"authorization": f"Bearer {auditor_token(platform)}"}


def decisions_url(platform: Platform) -> str:
    return f"{platform.url('audit')}/audit/decisions"


def verify_db(platform: Platform) -> subprocess.CompletedProcess[str]:
    """The operator's command, reading the audit database directly."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "audit.cli",
            "--mongo-url",
            platform.endpoints["mongo"]["url"],
            "verify",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_documents(
    http: httpx.Client, platform: Platform, patient: str, hpr: str, reads: int
) -> list[str]:
    """Record one document for the patient and read it ``reads`` times; the read decision ids."""
    platform.relate(patient, hpr=hpr)
    created = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        json=document_reference(patient),
        headers=gp_headers(platform, hpr),
    )
    assert created.status_code == 201, created.text
    ids = []
    for _ in range(reads):
        read = http.get(
            f"{platform.url('journal')}{created.headers['location']}",
            headers=gp_headers(platform, hpr),
        )
        assert read.status_code == 200, read.text
        ids.append(read.headers["akson-decision-id"])
    return ids


def stored(platform: Platform, decision_id: str) -> dict[str, Any] | None:
    document: dict[str, Any] | None = platform.db("audit").decisions.find_one({"_id": decision_id})
    return document


# -- auditor queries -------------------------------------------------------------------------


def test_auditor_query_by_patient_returns_the_journal_reads_of_that_patient(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144950"
    read_ids = read_documents(http, platform, patient, hpr, reads=2)
    headers = auditor(platform)

    def reads_listed() -> list[dict[str, Any]]:
        response = http.get(decisions_url(platform), params={"patient": patient}, headers=headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return [i for i in items if i["decision_id"] in read_ids]

    reads = eventually(lambda: len(reads_listed()) == 2 and reads_listed(), timeout=15)
    for item in reads:
        assert item["patient"] == patient and item["hpr"] == hpr
        assert item["action"] == "read" and item["resource_type"] == "DocumentReference"
        assert item["allow"] is True and "care_relation" in item["reasons"]
        assert item["organisation"] == "974760673" and item["profession"] == "LE"
    positions = [i["position"] for i in reads]
    assert positions == sorted(positions, reverse=True), "newest first"

    # filters narrow: the same practitioner's allowed reads; nothing denied for them
    by_practitioner = http.get(
        decisions_url(platform),
        params={"practitioner": hpr, "outcome": "allow", "reason": "care_relation"},
        headers=headers,
    ).json()["items"]
    assert set(read_ids) <= {i["decision_id"] for i in by_practitioner}
    denied = http.get(
        decisions_url(platform), params={"patient": patient, "outcome": "deny"}, headers=headers
    ).json()["items"]
    assert not {i["decision_id"] for i in denied} & set(read_ids)
    # a time window that ended before the reads finds none of them
    window = http.get(
        decisions_url(platform),
        params={"patient": patient, "to": "2020-01-01T00:00:00Z"},
        headers=headers,
    ).json()["items"]
    assert window == []


def test_the_auditors_own_query_is_logged_too(platform: Platform, http: httpx.Client) -> None:
    patient = new_patient_id()
    token = auditor_token(platform)
    response = http.get(
        decisions_url(platform),
        params={"patient": patient},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    decision_id = response.headers["akson-decision-id"]
    logged = eventually(lambda: stored(platform, decision_id), timeout=15)
    assert logged["actor"] == unverified_claims(token)["sub"]
    assert logged["resource_type"] == "DecisionLog" and logged["action"] == "search"
    assert logged["patient"] == patient and logged["purpose"] == "audit"
    assert logged["allow"] is True


def test_keyset_paging_walks_every_decision_once(platform: Platform, http: httpx.Client) -> None:
    patient, hpr = new_patient_id(), "9144951"
    read_ids = read_documents(http, platform, patient, hpr, reads=5)
    headers = auditor(platform)
    params = {"patient": patient, "resource_type": "DocumentReference", "_count": "2"}

    def all_pages() -> list[str]:
        seen, url = [], decisions_url(platform)
        query: dict[str, str] | None = dict(params)
        while url:
            page = http.get(url, params=query, headers=headers).json()
            seen += [i["decision_id"] for i in page["items"]]
            url = f"{platform.url('audit')}{page['next']}" if page["next"] else ""
            query = None  # httpx replaces the link's query string with an empty params dict
        return seen

    seen = eventually(lambda: set(read_ids) <= set(pages := all_pages()) and pages, timeout=15)
    assert len(seen) == len(set(seen)), "no decision twice"


def test_only_auditors_may_query(platform: Platform, http: httpx.Client) -> None:
    url = decisions_url(platform)
    assert http.get(url).status_code == 401
    gp = http.get(url, headers=gp_headers(platform, "9144952", audience="audit"))
    assert gp.status_code == 403
    assert gp.headers["content-type"] == "application/problem+json"
    scoped = platform.client_token("audit", "DocumentReference.read")
    system = http.get(url, headers={"authorization": f"Bearer {scoped}"})
    assert system.status_code == 403
    for path in ("/audit/decisions/export", "/audit/chain/verify", "/audit/reviews"):
        refused = http.get(
            f"{platform.url('audit')}{path}",
            headers=gp_headers(platform, "9144952", audience="audit"),
        )
        assert refused.status_code == 403, path


def test_the_api_refuses_to_change_or_delete_decisions(
    platform: Platform, http: httpx.Client
) -> None:
    headers = auditor(platform)
    decision_id = read_documents(http, platform, new_patient_id(), "9144953", reads=1)[0]
    eventually(lambda: stored(platform, decision_id), timeout=15)
    before = stored(platform, decision_id)
    for method in ("PUT", "PATCH", "DELETE"):
        for path in (f"/audit/decisions/{decision_id}", "/audit/decisions"):
            response = http.request(
                method,
                f"{platform.url('audit')}{path}",
                json={"record": {"result": {"allow": False}}},
                headers=headers,
            )
            assert response.status_code == 405, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["allow"] == "GET"
    created = http.post(decisions_url(platform), json={"decision_id": "forged"}, headers=headers)
    assert created.status_code == 405
    assert stored(platform, decision_id) == before
    assert stored(platform, "forged") is None


def test_export_streams_ndjson_and_csv(platform: Platform, http: httpx.Client) -> None:
    patient, hpr = new_patient_id(), "9144954"
    read_ids = read_documents(http, platform, patient, hpr, reads=3)
    headers = auditor(platform)
    url = f"{decisions_url(platform)}/export"

    def exported() -> list[dict[str, Any]]:
        response = http.get(url, params={"patient": patient}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.text.splitlines()]

    rows = eventually(lambda: set(read_ids) <= {r["decision_id"] for r in exported()}, timeout=15)
    assert rows
    lines = exported()
    assert all(line["patient"] == patient for line in lines)
    table = http.get(url, params={"patient": patient, "format": "csv"}, headers=headers)
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(table.text)))
    assert {r["decision_id"] for r in parsed} == {line["decision_id"] for line in lines}
    assert {r["hpr"] for r in parsed if r["decision_id"] in read_ids} == {hpr}
    assert "Kontroll" not in table.text and "Kontroll" not in str(lines)


def test_the_cli_prints_the_query_as_a_table(platform: Platform, http: httpx.Client) -> None:
    patient, hpr = new_patient_id(), "9144955"
    read_ids = read_documents(http, platform, patient, hpr, reads=1)
    eventually(lambda: stored(platform, read_ids[0]), timeout=15)
    env = {"AKSON_AUDIT_URL": platform.url("audit"), "AKSON_TOKEN": auditor_token(platform)}
    result = subprocess.run(
        [sys.executable, "-m", "audit.cli", "query", "--patient", patient, "--outcome", "allow"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    header, rule, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["#", "time", "(UTC)"]
    assert set(rule) <= {"-", " "}
    assert any(patient in row and f"hpr:{hpr}" in row and " read " in row for row in rows), rows
    refused = subprocess.run(
        [sys.executable, "-m", "audit.cli", "query", "--patient", patient],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env, "AKSON_TOKEN": "not-a-token"},
    )
    assert refused.returncode != 0 and "401" in refused.stderr


# -- the citizen's access log ---------------------------------------------------------------


def test_a_citizen_sees_a_new_access_to_their_record_within_seconds(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144956"
    citizen = {
        "authorization": f"Bearer {platform.token('audit', subject=patient, kind='citizen')}"
    }
    log_url = f"{platform.url('audit')}/audit/access-log"
    # an auditor looking into the patient's log is not an access to the record
    http.get(decisions_url(platform), params={"patient": patient}, headers=auditor(platform))
    started = time.monotonic()
    read_id = read_documents(http, platform, patient, hpr, reads=1)[0]

    def listed() -> list[dict[str, Any]]:
        response = http.get(log_url, headers=citizen)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    accesses = eventually(lambda: any(a["action"] == "read" for a in listed()), timeout=10)
    assert accesses and time.monotonic() - started < 10
    items = listed()
    read = next(a for a in items if a["action"] == "read")
    assert read["hpr"] == hpr and read["profession"] == "LE"
    assert read["organisation"] == "974760673" and read["category"] == "general"
    assert read["basis"] == ["care_relation"] and read["emergency"] is False
    # the registry's care-relation write is listed too; the auditor's query is not
    assert {a["resource_type"] for a in items} == {"DocumentReference", "CareRelation"}
    assert "Kontroll" not in str(items) and read_id not in str(items)
    # someone else's log does not show it, and a practitioner has no access log to read
    other = platform.token("audit", subject=new_patient_id(), kind="citizen")
    others = http.get(log_url, headers={"authorization": f"Bearer {other}"}).json()["items"]
    assert all(a["hpr"] != hpr for a in others)
    gp = http.get(log_url, headers=gp_headers(platform, hpr, audience="audit"))
    assert gp.status_code == 403


def test_the_citizens_access_log_names_who_accessed_from_master_data(
    platform: Platform, http: httpx.Client
) -> None:
    """Name, profession and unit resolved from master data's register (public HPR and
    organisation names, projected from its events); no clinical content."""
    patient, hpr, unit = new_patient_id(), str(next(_hpr_serial)), new_org_number()
    # the token helper registers the practitioner and unit with generic facts: name them after
    gp = gp_headers(platform, hpr, unit=unit)
    platform.relate(patient, hpr=hpr)
    directory = system(platform, DIRECTORY)
    base = platform.url("masterdata")
    saved = http.put(
        f"{base}/organisations/{unit}",
        json={
            "org_number": unit,
            "name": "Legekontor Syntetisk",
            "municipality": "4601",
            "parent": "974760673",
        },
        headers=directory,
    )
    assert saved.status_code == 200, saved.text
    doctor = {
        "hpr_number": hpr,
        "given_name": "Kari",
        "family_name": "Lege",
        "status_from": "2000-01-01",
        "authorisations": [{"profession": "LE", "valid_from": "2000-01-01"}],
        "employments": [{"unit": unit, "period_start": "2000-01-01"}],
    }
    saved = http.put(f"{base}/practitioners/{hpr}", json=doctor, headers=directory)
    assert saved.status_code == 200, saved.text
    audit_db = platform.db("audit")
    eventually(
        lambda: (
            (audit_db.practitioners.find_one({"_id": hpr}) or {}).get("name") == "Kari Lege"
            and (audit_db.organisations.find_one({"_id": unit}) or {}).get("name")
            == "Legekontor Syntetisk"
        ),
        timeout=15,
    )
    citizen = {
        "authorization": f"Bearer {platform.token('audit', subject=patient, kind='citizen')}"
    }
    started = time.monotonic()
    created = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        json=document_reference(patient),
        headers=gp,
    )
    assert created.status_code == 201, created.text

    def listed() -> list[dict[str, Any]]:
        response = http.get(f"{platform.url('audit')}/audit/access-log", headers=citizen)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return [a for a in items if a["resource_type"] == "DocumentReference"]

    # the write, and the read of what it answered (a response body is a read): both logged
    accesses = eventually(lambda: len(found := listed()) >= 2 and found, timeout=10)
    assert time.monotonic() - started < 10
    assert sorted(a["action"] for a in accesses) == ["read", "write"]
    written = next(a for a in accesses if a["action"] == "write")
    assert written["name"] == "Kari Lege" and written["profession"] == "LE"
    assert written["unit"] == unit and written["unit_name"] == "Legekontor Syntetisk"
    assert written["organisation"] == "974760673" and written["organisation_name"]
    assert written["action"] == "write" and written["basis"] == ["care_relation"]
    assert "Kontroll" not in str(written)


# -- intake: idempotent, gap-free under concurrency ------------------------------------------


def fake_entry(patient: str, n: int, decision_id: str | None = None) -> dict[str, Any]:
    return {
        "decision_id": decision_id or str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "path": "akson/authz/decision",
        "labels": {"app": "akson-authz", "environment": "test"},
        "input": {
            "subject": {"id": f"hpr:91449{n % 100:02d}", "kind": "practitioner"},
            "action": "read",
            "resource": {"type": "DocumentReference", "patient": patient, "category": "general"},
            "context": {"care_relations": [], "purpose": "treatment"},
        },
        "result": {"allow": False, "reasons": ["no_legal_basis"], "obligations": []},
    }


def upload(http: httpx.Client, platform: Platform, batch: list[dict[str, Any]]) -> int:
    response = http.post(
        f"{platform.url('audit')}/opa/decision-logs",
        content=gzip.compress(json.dumps(batch).encode()),
        headers={
            "content-encoding": "gzip",
            "content-type": "application/json",
            "authorization": f"Bearer {platform.tokens['audit_upload_token']}",
        },
    )
    return response.status_code


def test_concurrent_and_repeated_uploads_are_stored_once_without_gaps(
    platform: Platform, http: httpx.Client
) -> None:
    patient = new_patient_id()
    batches = [[fake_entry(patient, b * 10 + i) for i in range(10)] for b in range(8)]
    # every batch twice (OPA re-sends what it is unsure of), all at once
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda b: upload(http, platform, b), batches + batches))
    assert codes == [204] * 16
    documents = list(platform.db("audit").decisions.find({"patient": patient}))
    assert len(documents) == 80
    assert {d["_id"] for d in documents} == {e["decision_id"] for b in batches for e in b}
    # each batch keeps its order in the chain
    for batch in batches:
        positions = [
            next(d["position"] for d in documents if d["_id"] == e["decision_id"]) for e in batch
        ]
        assert positions == sorted(positions)
    result = verify_db(platform)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_large_chunk_sent_again_is_stored_once_and_its_new_entries_too(
    platform: Platform, http: httpx.Client
) -> None:
    """OPA re-sends a chunk whose upload timed out though audit stored it (a slow answer under
    load): 300 decisions again, with 3 new ones. One duplicate a round failed such a chunk for
    ever (the chaos suite's audit outage: the log stalled with 100,000 decisions buffered)."""
    patient = new_patient_id()
    chunk = [fake_entry(patient, i) for i in range(300)]
    assert upload(http, platform, chunk) == 204
    again = [*chunk[:150], *(fake_entry(patient, 300 + i) for i in range(3)), *chunk[150:]]
    assert upload(http, platform, again) == 204
    documents = list(platform.db("audit").decisions.find({"patient": patient}))
    assert len(documents) == 303
    assert len({d["position"] for d in documents}) == 303


def test_two_writers_sharing_the_database_keep_one_gap_free_chain(platform: Platform) -> None:
    """Two store instances (as two replicas would be) appending at the same time."""
    patient = new_patient_id()

    async def race() -> None:
        databases = [Database(platform.endpoints["mongo"]["url"], "akson_audit") for _ in "ab"]
        stores = [DecisionStore(d, checkpoint_every=1000) for d in databases]
        try:

            async def writer(store: DecisionStore, offset: int) -> None:
                for b in range(5):
                    batch = [fake_entry(patient, offset + b * 5 + i) for i in range(5)]
                    await store.append(batch)

            await asyncio.gather(writer(stores[0], 0), writer(stores[1], 50))
            report = await stores[0].verify()
            assert report.intact, report.summary()
        finally:
            for database in databases:
                await database.close()

    asyncio.run(race())
    documents = list(platform.db("audit").decisions.find({"patient": patient}))
    assert len(documents) == 50
    assert len({d["position"] for d in documents}) == 50


def test_audit_refuses_uploads_without_the_token(platform: Platform, http: httpx.Client) -> None:
    entry = fake_entry(new_patient_id(), 1)
    response = http.post(
        f"{platform.url('audit')}/opa/decision-logs",
        json=[entry],
        headers={"authorization": "Bearer nope"},
    )
    assert response.status_code == 401
    assert stored(platform, entry["decision_id"]) is None


# -- tampering -------------------------------------------------------------------------------


def test_tampering_in_the_database_is_named_by_its_exact_position(
    platform: Platform, http: httpx.Client
) -> None:
    patient = new_patient_id()
    batch = [fake_entry(patient, i) for i in range(6)]
    assert upload(http, platform, batch) == 204
    decisions = platform.db("audit").decisions
    documents = sorted(decisions.find({"patient": patient}), key=lambda d: d["position"])
    positions = [d["position"] for d in documents]
    assert positions == list(range(positions[0], positions[0] + 6))
    clean = verify_db(platform)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "chain intact" in clean.stdout
    headers = auditor(platform)
    api_verify = f"{platform.url('audit')}/audit/chain/verify"
    assert http.get(api_verify, headers=headers, timeout=SLOW).json()["intact"] is True

    def broken_at(position: int, problem: str) -> None:
        result = verify_db(platform)
        assert result.returncode == 1, result.stdout
        assert f"chain BROKEN at position {position}:" in result.stdout, result.stdout
        answer = http.get(api_verify, headers=headers, timeout=SLOW).json()
        assert answer["intact"] is False
        assert (answer["first_bad_position"], answer["problem"]) == (position, problem), answer

    # 1. alter one record's outcome (deny → allow)
    altered = documents[2]
    decisions.update_one({"_id": altered["_id"]}, {"$set": {"record.result.allow": True}})
    try:
        broken_at(altered["position"], "altered")
    finally:
        decisions.replace_one({"_id": altered["_id"]}, altered)
    # 1b. alter only an indexed query field (hiding it from a query by patient)
    decisions.update_one({"_id": altered["_id"]}, {"$set": {"patient": "00000000000"}})
    try:
        broken_at(altered["position"], "altered")
    finally:
        decisions.replace_one({"_id": altered["_id"]}, altered)
    assert verify_db(platform).returncode == 0

    # 2. delete one record
    deleted = documents[3]
    decisions.delete_one({"_id": deleted["_id"]})
    try:
        broken_at(deleted["position"], "deleted")
    finally:
        decisions.insert_one(deleted)
    assert verify_db(platform).returncode == 0

    # 3. reorder: two records swap positions
    first, second = documents[1], documents[4]
    decisions.update_one({"_id": first["_id"]}, {"$set": {"position": -1}})
    decisions.update_one({"_id": second["_id"]}, {"$set": {"position": first["position"]}})
    decisions.update_one({"_id": first["_id"]}, {"$set": {"position": second["position"]}})
    try:
        broken_at(first["position"], "reordered")
    finally:
        decisions.update_one({"_id": first["_id"]}, {"$set": {"position": -1}})
        decisions.update_one({"_id": second["_id"]}, {"$set": {"position": second["position"]}})
        decisions.update_one({"_id": first["_id"]}, {"$set": {"position": first["position"]}})
    assert verify_db(platform).returncode == 0


# -- emergency-access review ----------------------------------------------------------------


def publish_emergency_access(
    http: httpx.Client, platform: Platform, patient: str, decision_id: str
) -> None:
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "akson/journal",
        "type": "journal.access.emergency.v1",
        "subject": patient,
        "datacontenttype": "application/json",
        "data": {
            "decision_id": decision_id,
            "patient": patient,
            "practitioner": "9144960",
            "unit": "unit-legevakt",
            "organisation": "974760673",
            "reason_code": "life_threatening",
            "resource_type": "DocumentReference",
            "category": "general",
            "at": datetime.now(UTC).isoformat(),
        },
    }
    platform.publish("journal", "journal.access.emergency", envelope)


def test_an_emergency_access_is_queued_for_review_and_reviewed_once(
    platform: Platform, http: httpx.Client
) -> None:
    patient, decision_id = new_patient_id(), str(uuid.uuid4())
    publish_emergency_access(http, platform, patient, decision_id)
    publish_emergency_access(http, platform, patient, decision_id)  # reported twice: one review
    headers = auditor(platform)
    reviews = f"{platform.url('audit')}/audit/reviews"

    def queued() -> list[dict[str, Any]]:
        response = http.get(reviews, params={"status": "open", "patient": patient}, headers=headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    open_reviews = eventually(queued, timeout=15)
    assert [r["id"] for r in open_reviews] == [decision_id]
    assert open_reviews[0]["reason_code"] == "life_threatening"
    assert open_reviews[0]["practitioner"] == "9144960"

    gp = http.post(
        f"{reviews}/{decision_id}",
        json={"outcome": "justified", "comment": "ok"},
        headers=gp_headers(platform, "9144961", audience="audit"),
    )
    assert gp.status_code == 403
    verdict = http.post(
        f"{reviews}/{decision_id}",
        json={"outcome": "not_justified", "comment": "No emergency recorded at the time."},
        headers=headers,
    )
    assert verdict.status_code == 200, verdict.text
    closed = verdict.json()
    assert closed["status"] == "closed" and closed["outcome"] == "not_justified"
    assert closed["reviewer"] == unverified_claims(auditor_token(platform))["sub"]
    again = http.post(
        f"{reviews}/{decision_id}", json={"outcome": "justified", "comment": "x"}, headers=headers
    )
    assert again.status_code == 409
    assert queued() == []
    # the outcome is an event (through the outbox), without the reviewer's comment
    (event,) = eventually(
        lambda: [
            e
            for e in platform.events("audit.emergency_access.reviewed")
            if e["data"]["review_id"] == decision_id
        ]
    )
    assert event["data"]["outcome"] == "not_justified"
    assert "comment" not in event["data"] and "No emergency" not in json.dumps(event)
    missing = http.post(
        f"{reviews}/does-not-exist", json={"outcome": "justified", "comment": "x"}, headers=headers
    )
    assert missing.status_code == 404


# -- retention -------------------------------------------------------------------------------


def test_retention_prunes_whole_segments_from_the_start_and_the_rest_verifies(
    platform: Platform,
) -> None:
    """On its own database (pruning the shared one would take other tests' decisions)."""
    name = f"akson_audit_retention_{uuid.uuid4().hex[:8]}"
    patient = new_patient_id()

    def aged(n: int, days: int) -> dict[str, Any]:
        entry = fake_entry(patient, n)
        at = datetime.now(UTC) - timedelta(days=days)
        entry["timestamp"] = at.isoformat().replace("+00:00", "Z")
        return entry

    async def scenario() -> tuple[int, Any, Any, Any]:
        database = Database(platform.endpoints["mongo"]["url"], name)
        store = DecisionStore(database, checkpoint_every=10)
        await database.bootstrap()
        try:
            # 25 records a year old, then 10 from today: segments 1-10 and 11-20 may go
            await store.append([aged(n, 365) for n in range(25)])
            await store.append([aged(n, 0) for n in range(25, 35)])
            deleted = await store.prune(datetime.now(UTC) - timedelta(days=30))
            kept = await store.verify()
            again = await store.prune(datetime.now(UTC) - timedelta(days=30))
            # deleting the oldest kept record is still caught
            await database.collection("decisions").delete_one({"position": 21})
            broken = await store.verify()
            return deleted, kept, again, broken
        finally:
            await database.client.drop_database(name)
            await database.close()

    deleted, kept, again, broken = asyncio.run(scenario())
    assert deleted == 20 and again == 0
    assert kept.intact, kept.summary()
    assert (kept.start, kept.checked, kept.last_position) == (21, 15, 35)
    assert broken.finding is not None
    assert (broken.finding.position, broken.finding.problem) == (21, "deleted")


# -- snooping signals ------------------------------------------------------------------------


def access_entry(
    hpr: str,
    patient: str,
    at: datetime,
    reasons: list[str],
    protected: bool = False,
    emergency_reason: str | None = None,
) -> dict[str, Any]:
    """A decision-log entry as OPA uploads it: a practitioner's allowed read of a record."""
    return {
        "decision_id": str(uuid.uuid4()),
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "path": "akson/authz/decision",
        "labels": {"app": "akson-authz", "environment": "test"},
        "input": {
            "subject": {"id": f"hpr:{hpr}", "kind": "practitioner", "hpr_number": hpr},
            "action": "read",
            "resource": {"type": "DocumentReference", "patient": patient, "category": "general"},
            "context": {
                "care_relations": [],
                "purpose": "treatment",
                "patient": {"protected_address": protected, "deceased": False},
                **({"emergency_reason": emergency_reason} if emergency_reason else {}),
            },
        },
        "result": {"allow": True, "reasons": reasons, "obligations": []},
    }


def test_snooping_signals_flag_volume_protected_addresses_and_repeated_emergency(
    platform: Platform, http: httpx.Client
) -> None:
    """Decisions go in through OPA's intake (as OPA uploads them, with past timestamps for the
    baseline); the signals name each practitioner with the rule and numbers that fired."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    snooper, steady, hider, breaker = (str(next(_hpr_serial)) for _ in range(4))
    batch = []
    for days_ago in range(1, 8):  # a week of 2 patients a day each
        for who in (snooper, steady):
            for n in range(2):
                patient = f"base-{who}-{days_ago}-{n}"
                at = now - timedelta(days=days_ago)
                batch.append(access_entry(who, patient, at, ["care_relation"]))
    batch += [access_entry(snooper, new_patient_id(), now, ["care_relation"]) for _ in range(15)]
    batch += [access_entry(steady, new_patient_id(), now, ["care_relation"]) for _ in range(2)]
    hidden = new_patient_id()
    batch.append(access_entry(hider, hidden, now, ["care_relation"], protected=True))
    batch += [
        access_entry(breaker, new_patient_id(), now, ["emergency"], emergency_reason="unconscious")
        for _ in range(3)
    ]
    assert upload(http, platform, batch) == 204
    signals_url = f"{platform.url('audit')}/audit/signals"
    response = http.get(
        signals_url, params={"baseline_days": 7}, headers=auditor(platform), timeout=SLOW
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    mine = {(s["rule"], s["practitioner"]): s for s in items}

    volume = mine[("unusual_volume", snooper)]
    assert volume["count"] == 15 and volume["numbers"]["baseline_mean"] == 2.0
    assert "15 distinct patients" in volume["explanation"]
    assert ("unusual_volume", steady) not in mine
    protected = mine[("protected_address", hider)]
    assert protected["patient"] == hidden and protected["count"] == 1
    assert ("protected_address", snooper) not in mine
    emergency = mine[("repeated_emergency", breaker)]
    assert emergency["count"] == 3 and "only by emergency" in emergency["explanation"]
    assert ("repeated_emergency", snooper) not in mine

    # auditors only
    gp = http.get(signals_url, headers=gp_headers(platform, snooper, audience="audit"))
    assert gp.status_code == 403
    # the same from the CLI, as a table with the reason in words
    env = {"AKSON_AUDIT_URL": platform.url("audit"), "AKSON_TOKEN": auditor_token(platform)}
    result = subprocess.run(
        [sys.executable, "-m", "audit.cli", "signals", "--baseline-days", "7"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if snooper in line)
    assert "unusual_volume" in row and "15 distinct patients" in row
