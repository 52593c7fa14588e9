"""No national id, HPR number or token in any process log of the run (issue 13).

The session's platform fixture scans every log (apps, sidecars, OPA, FerretDB, PostgreSQL,
Redis) at the end for everything tests/support.py handed out; these tests drive the paths that
used to leak (publishing with a partition key, statements PostgreSQL refuses) and scan at once.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from pymongo.errors import PyMongoError

from tests.integration.conftest import Platform
from tests.integration.test_foundation import document_reference, gp_headers
from tests.support import handed_out, log_hits, new_patient_id

pytestmark = pytest.mark.integration

# a whole suite hands out hundreds of identifiers and tokens; this file alone more than 20
SESSION_MINIMUM = 20


def run_logs(platform: Platform) -> list[Path]:
    return sorted((platform.stack.run_dir / "logs").glob("*.log"))


def test_publishing_and_failed_statements_leave_no_identifier_in_any_log(
    platform: Platform, http: httpx.Client
) -> None:
    platform.log_scan_minimum = max(platform.log_scan_minimum, SESSION_MINIMUM)
    hpr = "9144970"
    patients = [new_patient_id() for _ in range(3)]
    for patient in patients:  # masterdata publishes, journal consumes (partition key = patient)
        platform.relate(patient, hpr=hpr)
        created = http.post(
            f"{platform.url('journal')}/fhir/R4/DocumentReference",
            json=document_reference(patient),
            headers=gp_headers(platform, hpr),
        )
        assert created.status_code == 201, created.text
        read = http.get(
            f"{platform.url('journal')}{created.headers['location']}",
            headers=gp_headers(platform, hpr),
        )
        assert read.status_code == 200
    recorded = {event["data"]["patient"] for event in platform.events("journal.document.recorded")}
    assert set(patients) <= recorded
    # statements PostgreSQL refuses, with a national id among their parameters: a NUL in
    # jsonb and a duplicate key (the incident's thousands of logged statements)
    scratch = platform.mongo[f"logscan_{uuid.uuid4().hex[:8]}"]
    try:
        with pytest.raises(PyMongoError):
            scratch.documents.insert_one({"patient": patients[0], "note": "a\x00b"})
        scratch.documents.insert_one({"_id": patients[1]})
        with pytest.raises(PyMongoError):
            scratch.documents.insert_one({"_id": patients[1]})
    finally:
        platform.mongo.drop_database(scratch.name)

    # every process has written its log by now; none holds what the tests used
    logs = run_logs(platform)
    assert {log.stem for log in logs} >= set(platform.stack.processes)
    assert sum(log.stat().st_size for log in logs) > 0
    assert len(handed_out) > SESSION_MINIMUM
    secrets = set(platform.tokens.values())
    assert log_hits(logs, {*handed_out, *secrets}) == []


def test_the_scan_finds_what_a_leaky_line_would_hold(platform: Platform, tmp_path: Path) -> None:
    """The scan can fail: a copy of the run's logs with the old httpx line and a token added."""
    patient = new_patient_id()
    token = platform.token("journal", subject="log-scan", kind="system", scope="Patient.read")
    copies = []
    for log in run_logs(platform):
        copy = tmp_path / log.name
        copy.write_bytes(log.read_bytes())
        copies.append(copy)
    leaky = copies[0]
    with leaky.open("a") as lines:
        lines.write(
            '{"msg": "HTTP Request: POST http://127.0.0.1:1/v1.0/publish/pubsub/'
            f'masterdata.person.changed?metadata.partitionKey={patient} 204"}}\n'
        )
        lines.write(f'{{"msg": "upload", "payload": "{token.split(".")[1]}"}}\n')
        # a timestamp's fraction or a longer number is not the identifier
        lines.write(f'{{"time": "2026-12-01T11:00:00.{patient}", "n": "9{patient}"}}\n')
    hits = log_hits(copies, {patient, token})
    lines_count = len(leaky.read_text().splitlines())
    assert hits == [(leaky.name, lines_count - 2), (leaky.name, lines_count - 1)]
