"""Consent on the real stack: citizens manage their own directives, personnel act on their
behalf with a care relation and a reason, every change leaves through the outbox as
``consent.directive.changed`` without free text, the FHIR view validates, and without OPA
nothing is read or written.

Which tests need the policy of issue 4 (citizens may write ``Consent`` on their own record;
practitioners need category ``consent`` in the policy's tables) is said on each test.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent

from tests.integration.conftest import Platform, eventually
from tests.integration.test_foundation import gp_headers, put_person
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

TOPIC = "consent.directive.changed"
CONSENT_SCOPES = "Consent.read Consent.search Consent.write"
# an organisation the test practitioners do not work for (they are in 974760673): a block on
# their own organisation would, rightly, keep them out of the patient's directives
ORG = "910000004"
REASON = "Pasienten ringte fra sykehuset og ba oss sperre legen på hennes vegne."
_hpr_serial = iter(range(81_000_000, 82_000_000))


def citizen(platform: Platform, national_id: str) -> dict[str, str]:
    token = platform.token("consent", subject=national_id, kind="citizen")
    return {"authorization": f"Bearer {token}"}


def system(platform: Platform) -> dict[str, str]:
    token = platform.token("consent", subject="helsenorge", kind="system", scope=CONSENT_SCOPES)
    return {"authorization": f"Bearer {token}"}


def practitioner(platform: Platform, hpr: str) -> dict[str, str]:
    return gp_headers(platform, hpr, unit="consent-unit", audience="consent")


def block(patient: str, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": "block",
        "patient": patient,
        "practitioner": "4711",
        "period_start": "2026-01-01",
        **overrides,
    }


def sharing(patient: str, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": "consent",
        "patient": patient,
        "recipient_organisation": "999000029",
        "purpose": "nav",
        "categories": ["general"],
        "period_start": "2026-01-01",
        "period_end": "2027-12-31",
        **overrides,
    }


def registered_by_system(http: httpx.Client, platform: Platform, body: dict[str, Any]) -> str:
    """A directive registered through a system client on the patient's behalf (the current
    policy already lets a client with ``Consent.write`` do that)."""
    created = http.post(
        f"{platform.url('consent')}/directives",
        json={**body, "reason": REASON},
        headers=system(platform),
    )
    assert created.status_code == 201, created.text
    directive_id: str = created.json()["id"]
    return directive_id


def published(platform: Platform, directive_id: str) -> list[dict[str, Any]]:
    """The payloads of ``consent.directive.changed`` for one directive, as any subscriber sees
    them in the broker (the Redis stream)."""
    events = []
    for line in platform.stream(TOPIC).splitlines():
        if line.startswith("{") and directive_id in line:
            envelope = json.loads(line)
            events.append(envelope["data"])
    return events


def outbox_drained(platform: Platform, directive_id: str) -> bool:
    document = platform.db("consent").directives.find_one({"_id": directive_id})
    return document is not None and not document.get("_outbox")


# -- the citizen ------------------------------------------------------------------------------


def test_citizen_registers_reads_lists_and_withdraws_own_directive(
    platform: Platform, http: httpx.Client
) -> None:
    """Needs the issue-4 policy: citizens write Consent on their own record."""
    base, patient = platform.url("consent"), new_patient_id()
    own = citizen(platform, patient)
    created = http.post(f"{base}/directives", json=block(patient), headers=own)
    assert created.status_code == 201, created.text
    directive = created.json()
    assert created.headers["location"] == f"/directives/{directive['id']}"
    assert created.headers["etag"] == 'W/"1"'
    assert (directive["status"], directive["version"]) == ("active", 1)
    assert directive["registered_by"] == {
        "kind": "citizen", "id": patient, "hpr_number": None, "organisation": None, "unit": None,
    }  # fmt: skip

    url = f"{base}{created.headers['location']}"
    read = http.get(url, headers=own)
    assert read.status_code == 200 and read.json() == directive
    assert read.headers["etag"] == 'W/"1"' and read.headers["akson-decision-id"]
    listed = http.get(f"{base}/directives", params={"patient": patient}, headers=own)
    assert [d["id"] for d in listed.json()["items"]] == [directive["id"]]

    withdrawn = http.post(f"{url}/withdraw", headers={**own, "If-Match": 'W/"1"'})
    assert withdrawn.status_code == 200, withdrawn.text
    assert (withdrawn.json()["status"], withdrawn.json()["version"]) == ("withdrawn", 2)
    assert withdrawn.headers["etag"] == 'W/"2"'
    stale = http.post(f"{url}/withdraw", headers={**own, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    again = http.post(f"{url}/withdraw", headers=own)
    assert again.status_code == 409 and again.json()["version"] == 2

    # nothing is deleted: the withdrawn directive stays on the patient's list
    listed = http.get(f"{base}/directives", params={"patient": patient}, headers=own).json()
    assert [(d["id"], d["status"]) for d in listed["items"]] == [(directive["id"], "withdrawn")]
    active = http.get(f"{base}/directives", params={"patient": patient, "status": "active"},
                      headers=own)  # fmt: skip
    assert active.json()["items"] == []

    eventually(lambda: outbox_drained(platform, directive["id"]))
    events = eventually(lambda: len(published(platform, directive["id"])) == 2 and published(
        platform, directive["id"]))  # fmt: skip
    assert [(e["version"], e["status"]) for e in events] == [(1, "active"), (2, "withdrawn")]
    assert events[0]["patient"] == patient and events[0]["practitioner"] == "4711"


def test_a_citizen_cannot_touch_someone_elses_directives(
    platform: Platform, http: httpx.Client
) -> None:
    """Works with today's policy (the directive is registered by a system client)."""
    base, patient = platform.url("consent"), new_patient_id()
    directive_id = registered_by_system(http, platform, block(patient))
    stranger = citizen(platform, new_patient_id())
    url = f"{base}/directives/{directive_id}"
    answers = [
        http.get(url, headers=stranger),
        http.get(f"{base}/fhir/R4/Consent/{directive_id}", headers=stranger),
        http.get(f"{base}/directives", params={"patient": patient}, headers=stranger),
        http.post(f"{base}/directives", json=block(patient), headers=stranger),
        http.post(f"{url}/withdraw", headers=stranger),
    ]
    # one directive by id: refused reads exactly like unknown (404, no reasons); the
    # patient's directives as a whole: 403 with the reasons
    for answer in (answers[0], answers[1], answers[4]):
        assert answer.status_code == 404, answer.text
        # under the FHIR base an OperationOutcome, elsewhere problem+json
        fhir = answer.url.path.startswith("/fhir/")
        expected = "application/fhir+json; charset=utf-8" if fhir else "application/problem+json"
        assert answer.headers["content-type"] == expected
        assert "reasons" not in answer.json() and patient not in answer.text
    for answer in (answers[2], answers[3]):
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    assert "not_own_record" in answers[2].json()["reasons"]
    assert http.get(url, headers=system(platform)).json()["status"] == "active"
    assert platform.db("consent").directives.count_documents({"patient": patient}) == 1


# -- personnel on the patient's behalf ---------------------------------------------------------


def test_practitioner_needs_a_care_relation_and_gives_a_reason_that_never_leaves(
    platform: Platform, http: httpx.Client
) -> None:
    """Needs the issue-4 policy for the allowed part: category ``consent`` for doctors (LE)."""
    base, patient, hpr = platform.url("consent"), new_patient_id(), str(next(_hpr_serial))
    doctor = practitioner(platform, hpr)
    body = block(patient, practitioner=None, organisation=ORG)
    without_relation = http.post(f"{base}/directives", json={**body, "reason": REASON},
                                 headers=doctor)  # fmt: skip
    assert without_relation.status_code == 403
    assert "no_care_relation" in without_relation.json()["reasons"]

    platform.relate(patient, hpr=hpr, seen_by="consent")
    no_reason = http.post(f"{base}/directives", json=body, headers=doctor)
    assert no_reason.status_code == 422, no_reason.text
    assert no_reason.headers["content-type"] == "application/problem+json"
    created = http.post(f"{base}/directives", json={**body, "reason": REASON}, headers=doctor)
    assert created.status_code == 201, created.text
    directive = created.json()
    assert directive["registered_by"]["hpr_number"] == hpr
    assert directive["registered_by"]["kind"] == "practitioner"
    assert directive["history"][0]["reason"] == REASON

    url = f"{base}/directives/{directive['id']}/withdraw"
    assert http.post(url, headers=doctor).status_code == 422
    withdrawn = http.post(url, json={"reason": "Pasienten ombestemte seg."}, headers=doctor)
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["history"][1]["by"]["hpr_number"] == hpr

    eventually(lambda: outbox_drained(platform, directive["id"]))
    events = eventually(lambda: len(published(platform, directive["id"])) == 2 and published(
        platform, directive["id"]))  # fmt: skip
    assert {e["organisation"] for e in events} == {ORG}
    everything = platform.stream(TOPIC)
    assert "ringte" not in everything and "ombestemte" not in everything
    assert all("reason" not in e for e in events)
    stored = platform.db("consent").directives.find_one({"_id": directive["id"]})
    assert stored["history"][0]["reason"] == REASON


# -- FHIR, errors, master data -----------------------------------------------------------------


def test_the_fhir_consent_view_reads_and_searches_as_valid_resources(
    platform: Platform, http: httpx.Client
) -> None:
    """Works with today's policy (system client); a citizen reading their own also does."""
    base, patient = platform.url("consent"), new_patient_id()
    first = registered_by_system(http, platform, block(patient))
    second = registered_by_system(http, platform, sharing(patient))
    read = http.get(f"{base}/fhir/R4/Consent/{second}", headers=citizen(platform, patient))
    assert read.status_code == 200, read.text
    assert read.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert read.headers["etag"] == 'W/"1"'
    consent = Consent.model_validate(read.json())
    assert consent.provision is not None and consent.provision.type == "permit"
    assert REASON not in read.text

    search = http.get(f"{base}/fhir/R4/Consent", params={"patient": f"Patient/{patient}"},
                      headers=system(platform))  # fmt: skip
    assert (
        search.status_code == 200
        and search.headers["content-type"] == "application/fhir+json; charset=utf-8"
    )
    bundle = Bundle.model_validate(search.json())
    assert bundle.type == "searchset" and bundle.total == 2
    assert [e.resource.id for e in bundle.entry or []] == [first, second]  # type: ignore[union-attr]
    kinds = [e["resource"]["provision"]["type"] for e in search.json()["entry"]]
    assert kinds == ["deny", "permit"]


def test_missing_tokens_unknown_directives_and_invalid_shapes(
    platform: Platform, http: httpx.Client
) -> None:
    base, writer = platform.url("consent"), system(platform)
    assert http.get(f"{base}/directives", params={"patient": new_patient_id()}).status_code == 401
    missing = http.get(f"{base}/directives/{uuid.uuid4().hex}", headers=writer)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    two_targets = block(new_patient_id(), unit=ORG, reason=REASON)
    invalid = http.post(f"{base}/directives", json=two_targets, headers=writer)
    assert invalid.status_code == 422 and REASON not in invalid.text
    no_categories = sharing(new_patient_id(), categories=[], reason=REASON)
    assert http.post(f"{base}/directives", json=no_categories, headers=writer).status_code == 422


def test_person_events_reach_consent_and_a_deceased_patient_gets_no_new_directives(
    platform: Platform, http: httpx.Client
) -> None:
    """An unknown patient is accepted (master data's events may lag); a deceased one is not."""
    base, patient = platform.url("consent"), new_patient_id()
    registered_by_system(http, platform, block(patient))
    assert put_person(http, platform, patient, date_of_death="2026-01-05").status_code == 200
    eventually(
        lambda: (platform.db("consent").patients.find_one({"_id": patient}) or {}).get("deceased")
    )
    refused = http.post(f"{base}/directives", json={**block(patient), "reason": REASON},
                        headers=system(platform))  # fmt: skip
    assert refused.status_code == 409, refused.text
    assert platform.db("consent").directives.count_documents({"patient": patient}) == 1


def test_with_opa_stopped_consent_is_neither_read_nor_written(
    platform: Platform, http: httpx.Client
) -> None:
    base, patient = platform.url("consent"), new_patient_id()
    directive_id = registered_by_system(http, platform, block(patient))
    writer = system(platform)
    platform.stack.stop("opa")
    try:
        read = http.get(f"{base}/directives/{directive_id}", headers=writer)
        listed = http.get(f"{base}/directives", params={"patient": patient}, headers=writer)
        written = http.post(f"{base}/directives", json={**block(patient), "reason": REASON},
                            headers=writer)  # fmt: skip
        withdrawn = http.post(f"{base}/directives/{directive_id}/withdraw",
                              json={"reason": REASON}, headers=writer)  # fmt: skip
    finally:
        platform.stack.start("opa")
    for answer in (read, listed, written, withdrawn):
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["reasons"] == ["policy_unavailable"]
        assert "4711" not in answer.text
    assert platform.db("consent").directives.count_documents({"patient": patient}) == 1
    assert http.get(f"{base}/directives/{directive_id}", headers=writer).json()["version"] == 1
