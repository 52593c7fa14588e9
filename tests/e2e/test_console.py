"""The console in a real browser (issue 20): an auditor finds an emergency access and records
its review; a citizen sees a new access appear, registers a block and withdraws another.

The stack is the integration tests' (every service, real identity flows); the browser is
Debian's ``chromium`` driven by ``playwright-core`` (``tests/e2e/console.mjs``), with axe-core
on every page. What the browser did is then checked through the platform's own APIs: the review
is closed with the auditor's verdict, the block withdrawn, the new block registered by the
citizen herself. Screenshots and axe reports: ``test-artifacts/e2e/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import httpx
import pytest
from stack import DEV_AUDITOR_HPR, ROOT

from tests.integration.conftest import Platform, eventually
from tests.integration.test_foundation import document_reference, gp_headers, put_person
from tests.support import handed, new_patient_id

pytestmark = pytest.mark.integration

E2E = ROOT / "tests" / "e2e"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
EMERGENCY_REASON = "unconscious_patient"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is missing: `make e2e` installs Debian's package"
    return found


def test_an_auditor_reviews_an_emergency_access_and_a_citizen_manages_her_blocks(
    platform: Platform, http: httpx.Client
) -> None:
    assert (E2E / "node_modules" / "playwright-core").is_dir(), "run `make e2e` (npm ci)"
    patient, gp, emergency_doctor = new_patient_id(), handed("9650001"), handed("9650002")
    blocked, newly_blocked = handed("9650003"), handed("9650004")
    journal = f"{platform.url('journal')}/fhir/R4"
    assert put_person(http, platform, patient).status_code == 200
    platform.relate(patient, hpr=gp)
    eventually(lambda: platform.db("identity").persons.find_one({"_id": patient}))
    # the auditor: a named practitioner identity grants the auditor role (stack.py)
    auditor_token = platform.token(
        "audit", subject=f"hpr:{DEV_AUDITOR_HPR}", kind="practitioner",
        hpr_number=DEV_AUDITOR_HPR, profession="SP", unit="unit-log-control",
    )  # fmt: skip
    auditor = {"authorization": f"Bearer {auditor_token}"}

    gp_journal = gp_headers(platform, gp, audience="journal")
    written = http.post(
        f"{journal}/DocumentReference",
        json=document_reference(patient),
        headers={**gp_journal, "content-type": "application/fhir+json"},
    )
    assert written.status_code == 201, written.text
    document = f"{journal}/DocumentReference/{written.json()['id']}"
    # break-glass by a doctor with no care relation: a review opens
    stranger = gp_headers(platform, emergency_doctor, unit="unit-emergency", audience="journal")
    granted = http.get(document, headers={**stranger, "akson-emergency-reason": EMERGENCY_REASON})
    assert granted.status_code == 200, granted.text
    emergency_decision = granted.headers["akson-decision-id"]

    def review() -> dict[str, str] | None:
        """The review of the emergency access, open or closed."""
        answer = http.get(
            f"{platform.url('audit')}/audit/reviews", params={"patient": patient}, headers=auditor
        )
        assert answer.status_code == 200, answer.text
        found = [r for r in answer.json()["items"] if r["decision_id"] == emergency_decision]
        return found[0] if found else None

    eventually(review, timeout=30)
    # the decision must be in the log for the search (OPA uploads every 1-2 s)
    eventually(
        lambda: http.get(
            f"{platform.url('audit')}/audit/decisions/{emergency_decision}", headers=auditor
        ).status_code == 200,
        timeout=30,
    )  # fmt: skip
    # a block the citizen made before: withdrawn in the browser
    citizen = {
        "authorization": f"Bearer {platform.token('consent', subject=patient, kind='citizen')}"
    }
    consent = platform.url("consent")
    made = http.post(
        f"{consent}/directives",
        json={"kind": "block", "patient": patient, "practitioner": blocked,
              "period_start": "2026-01-01"},
        headers=citizen,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    block_id = made.headers["location"].rsplit("/", 1)[1]

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    run = subprocess.run(
        ["node", str(E2E / "console.mjs")],
        cwd=E2E,
        env={
            **os.environ,
            "CONSOLE_URL": platform.url("console"),
            "ARTIFACTS": str(ARTIFACTS),
            "CHROMIUM": chromium(),
            "AUDITOR_HPR": DEV_AUDITOR_HPR,
            "PATIENT": patient,
            "EMERGENCY_DECISION": emergency_decision,
            "EMERGENCY_REASON": EMERGENCY_REASON,
            "READ_URL": document,
            "GP_TOKEN": gp_journal["authorization"].removeprefix("Bearer "),
            "BLOCK_ID": block_id,
            "NEW_BLOCK_HPR": newly_blocked,
        },
        capture_output=True,
        text=True,
        timeout=170,
    )
    (ARTIFACTS / "console.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]

    # what the browser did, as the platform holds it
    closed = review()
    assert closed is not None and closed["status"] == "closed"
    assert closed["outcome"] == "not_justified"
    assert closed["reviewer"] == f"hpr:{DEV_AUDITOR_HPR}"
    directives = http.get(
        f"{consent}/directives", params={"patient": patient}, headers=citizen
    ).json()["items"]
    by_target = {d["practitioner"]: d for d in directives}
    assert by_target[blocked]["status"] == "withdrawn"
    assert by_target[blocked]["history"][-1]["by"]["kind"] == "citizen"
    assert by_target[newly_blocked]["status"] == "active"
    assert by_target[newly_blocked]["registered_by"]["id"] == patient
    assert len(list(ARTIFACTS.glob("*.png"))) >= 11
