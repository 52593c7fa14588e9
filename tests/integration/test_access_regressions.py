"""Issue 14's two defects, as found from outside with the platform's own flows.

(a) A citizen read the raw decision log about their record (``/audit/decisions?patient=`` and
its CSV export): the own-record grant also matched the decision-log type. The citizen's view is
the access log alone.

(b) The lab's write-only system client sent ``DELETE`` for a GP's Observation and got the whole
Observation back (a read through a write), and invalidated another writer's record. A client
changes or invalidates only what it recorded, and a response body is a read.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Platform, eventually
from tests.integration.test_foundation import document_reference, gp_headers
from tests.integration.test_journal import lab_report
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

FHIR = "application/fhir+json"
LAB_SCOPES = "DiagnosticReport.write Observation.write"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def record(http: httpx.Client, platform: Platform, resource: dict[str, Any], headers: Any) -> str:
    """Create through the journal; the new resource's id (from Location: the body may be an
    OperationOutcome when the writer may not read it back)."""
    answer = http.post(
        f"{platform.url('journal')}/fhir/R4/{resource['resourceType']}",
        content=json.dumps(resource),
        headers={**headers, "content-type": FHIR},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.headers["location"]).rsplit("/", 1)[-1]


# -- (a) the citizen and the decision log -------------------------------------------------------


def test_a_citizen_gets_the_access_log_and_never_the_decision_log(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144961"
    platform.relate(patient, hpr=hpr)
    gp = gp_headers(platform, hpr)
    location = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        json=document_reference(patient),
        headers=gp,
    ).headers["location"]
    read = http.get(f"{platform.url('journal')}{location}", headers=gp)
    assert read.status_code == 200, read.text
    auditor = bearer(platform.token("audit", subject="aud", kind="system", client="auditor"))
    audit = f"{platform.url('audit')}/audit"

    def logged() -> bool:
        answer = http.get(f"{audit}/decisions", params={"patient": patient}, headers=auditor)
        assert answer.status_code == 200, answer.text
        return any(item["hpr"] == hpr for item in answer.json()["items"])

    eventually(logged, timeout=20)  # there are decision records about this citizen

    citizen = bearer(platform.token("audit", subject=patient, kind="citizen"))
    refused = [
        http.get(f"{audit}/decisions", params={"patient": patient}, headers=citizen),
        http.get(
            f"{audit}/decisions/export",
            params={"format": "csv", "patient": patient},
            headers=citizen,
        ),
        http.get(
            f"{audit}/decisions/export",
            params={"format": "ndjson", "patient": patient},
            headers=citizen,
        ),
        http.get(f"{audit}/reviews", params={"patient": patient}, headers=citizen),
    ]
    for answer in refused:
        assert answer.status_code in (403, 404), (answer.request.url, answer.status_code)
        assert hpr not in answer.text and "decision_id" not in answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    assert "auditor_only" in refused[0].json()["reasons"]

    def own_log() -> list[dict[str, Any]]:
        answer = http.get(f"{audit}/access-log", headers=citizen)
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return [item for item in items if item["hpr"] == hpr]

    accesses = eventually(own_log, timeout=20)
    assert accesses[0]["resource_type"] == "DocumentReference"


# -- (b) a write-only client and other writers' records ----------------------------------------


def test_a_write_only_client_reads_nothing_through_a_write_and_changes_only_its_own(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144962"
    platform.relate(patient, hpr=hpr)
    gp = gp_headers(platform, hpr)
    lab = bearer(
        platform.token("journal", subject="lab", kind="system", client="lab", scope=LAB_SCOPES)
    )
    journal = f"{platform.url('journal')}/fhir/R4"
    observation, _ = lab_report(patient)
    gps_result = record(http, platform, observation, gp)
    labs_result = record(http, platform, observation, lab)

    # another writer's result: no content, not invalidated
    deleted = http.delete(f"{journal}/Observation/{gps_result}", headers=lab)
    assert deleted.status_code in (403, 404), deleted.text
    assert "4548-4" not in deleted.text and patient not in deleted.text
    assert "not_recorded_by_client" not in deleted.text  # a refusal reads like an unknown id
    current = http.get(f"{journal}/Observation/{gps_result}", headers=gp)
    assert current.status_code == 200 and current.json()["status"] == "final"
    assert current.json()["meta"]["versionId"] == "1"

    def amend(resource_id: str, headers: dict[str, str]) -> httpx.Response:
        """Version 1 of ``resource_id`` amended, with ``headers``' credentials."""
        return http.put(
            f"{journal}/Observation/{resource_id}",
            content=json.dumps({**observation, "id": resource_id, "status": "amended"}),
            headers={**headers, "content-type": FHIR, "if-match": 'W/"1"'},
        )

    changed = amend(gps_result, lab)
    assert changed.status_code in (403, 404), changed.text
    assert "4548-4" not in changed.text
    assert http.get(f"{journal}/Observation/{gps_result}", headers=gp).json()["status"] == "final"

    # its own result: corrected, then invalidated, and still no content in the answers
    corrected = amend(labs_result, lab)
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["resourceType"] == "OperationOutcome"
    assert "4548-4" not in corrected.text and patient not in corrected.text
    assert corrected.headers["etag"] == 'W/"2"'
    invalidated = http.delete(f"{journal}/Observation/{labs_result}", headers=lab)
    assert invalidated.status_code == 200, invalidated.text
    assert invalidated.json()["resourceType"] == "OperationOutcome"
    assert "4548-4" not in invalidated.text and patient not in invalidated.text
    minimal = http.post(
        f"{journal}/Observation",
        content=json.dumps(observation),
        headers={**lab, "content-type": FHIR, "prefer": "return=minimal"},
    )
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"].startswith("/fhir/R4/Observation/")
    seen = http.get(f"{journal}/Observation/{labs_result}", headers=gp).json()
    assert seen["status"] == "entered-in-error" and seen["meta"]["versionId"] == "3"

    # the GP, who may read it, still gets the representation from a write
    amended = amend(gps_result, gp)
    assert amended.status_code == 200, amended.text
    assert amended.json()["resourceType"] == "Observation"
    assert amended.json()["status"] == "amended"
