"""The foundation slice through real processes: masterdata → outbox → pub/sub → journal
projection → policy-checked journal read → OPA decision log → audit."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from stack import storage_services

from tests.integration.conftest import Platform, eventually
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

REGISTRY_SCOPES = "Patient.write CareRelation.write"


def registry_headers(platform: Platform) -> dict[str, str]:
    token = platform.token(
        "masterdata", subject="folkeregister-sync", kind="system", scope=REGISTRY_SCOPES
    )
    return {"authorization": f"Bearer {token}"}


def gp_headers(
    platform: Platform, hpr: str = "9144900", unit: str = "unit-gp-1", audience: str = "journal"
) -> dict[str, str]:
    token = platform.token(
        audience,
        subject=f"hpr:{hpr}",
        kind="practitioner",
        hpr_number=hpr,
        profession="LE",
        organisation="974760673",
        unit=unit,
        municipality="4601",
    )
    return {"authorization": f"Bearer {token}"}


def person(national_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "national_id": national_id,
        "given_name": "Test",
        "family_name": "Syntetisk",
        "municipality": "4601",
        **overrides,
    }


def put_person(
    http: httpx.Client, platform: Platform, national_id: str, **overrides: Any
) -> httpx.Response:
    return http.put(
        f"{platform.url('masterdata')}/persons/{national_id}",
        json=person(national_id, **overrides),
        headers=registry_headers(platform),
    )


def projected(platform: Platform, national_id: str) -> dict[str, Any] | None:
    document: dict[str, Any] | None = platform.db("journal").patients.find_one({"_id": national_id})
    return document


def document_reference(patient: str, text: str = "Kontroll hos fastlege.") -> dict[str, Any]:
    import base64

    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient}"},
        "category": [{"coding": [{"system": "urn:akson:category", "code": "general"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }


# -- the stack itself ------------------------------------------------------------------------


def test_every_app_sidecar_opa_and_database_answer(platform: Platform, http: httpx.Client) -> None:
    storage = storage_services(list(platform.endpoints["services"]))
    for service, urls in platform.endpoints["services"].items():
        ready = http.get(f"{urls['app']}/readyz")
        assert ready.status_code == 200, (service, ready.text)
        if service not in storage:  # the console: no database, asks no policy itself
            continue
        assert ready.json()["checks"] == {"database": True, "sidecar": True, "opa": True}
        assert http.get(f"{urls['dapr_http']}/v1.0/healthz").status_code == 204
    assert http.get(f"{platform.endpoints['opa']['url']}/health").status_code == 200
    assert platform.mongo.admin.command("ping")["ok"] == 1.0


def test_sidecar_metadata_lists_registered_components(
    platform: Platform, http: httpx.Client
) -> None:
    urls = platform.endpoints["services"]["journal"]
    metadata = http.get(
        f"{urls['dapr_http']}/v1.0/metadata",
        headers={"dapr-api-token": platform.tokens["dapr_api_token"]},
    ).json()
    components = {(c["name"], c["type"]) for c in metadata["components"]}
    assert ("pubsub", "pubsub.redis") in components
    assert ("localsecrets", "secretstores.local.file") in components
    topics = {s["topic"]: s.get("deadLetterTopic") for s in metadata["subscriptions"]}
    assert topics["masterdata.person.changed"] == "masterdata.person.changed.deadletter"


def test_sidecar_refuses_calls_without_the_dapr_api_token(
    platform: Platform, http: httpx.Client
) -> None:
    urls = platform.endpoints["services"]["journal"]
    assert http.get(f"{urls['dapr_http']}/v1.0/metadata").status_code == 401


# -- events ----------------------------------------------------------------------------------


def test_person_change_reaches_the_journal_projection_through_the_outbox(
    platform: Platform, http: httpx.Client
) -> None:
    national_id = new_patient_id()
    response = put_person(http, platform, national_id)
    assert response.status_code == 200, response.text
    patient = eventually(lambda: projected(platform, national_id))
    assert patient["municipality"] == "4601"
    assert patient["applied_changes"] == 1
    # the outbox entry is gone once published
    eventually(
        lambda: not platform.db("masterdata").persons.find_one({"_id": national_id}).get("_outbox")
    )


def test_an_event_published_twice_with_the_same_id_is_applied_once(
    platform: Platform, http: httpx.Client
) -> None:
    national_id = new_patient_id()
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "akson/masterdata",
        "type": "masterdata.person.changed.v1",
        "subject": national_id,
        "datacontenttype": "application/json",
        "data": {
            "national_id": national_id,
            "municipality": "1804",
            "address_protection": "none",
            "deceased": False,
        },
    }
    for _ in range(2):
        platform.publish("masterdata", "masterdata.person.changed", envelope)
    eventually(
        lambda: platform.db("journal").processed_events.find_one(
            {"_id": f"masterdata.person.changed:{envelope['id']}"}
        )
    )
    # a second, different event for the same person proves deliveries are still flowing
    put_person(http, platform, national_id, municipality="1804", given_name="Other")
    patient = eventually(
        lambda: (p := projected(platform, national_id)) and p["applied_changes"] >= 2 and p
    )
    assert patient["applied_changes"] == 2


def test_events_in_flight_survive_a_consumer_restart(
    platform: Platform, http: httpx.Client
) -> None:
    stack = platform.stack
    stack.stop("journal-dapr")
    stack.stop("journal-app")
    national_ids = [new_patient_id() for _ in range(15)]
    try:
        for national_id in national_ids:
            assert put_person(http, platform, national_id).status_code == 200
    finally:
        stack.start("journal-app")
        stack.start("journal-dapr")

    def all_projected() -> bool:
        return all(projected(platform, n) for n in national_ids)

    eventually(all_projected, timeout=40)


def test_a_state_change_is_not_lost_when_its_event_cannot_be_published(
    platform: Platform, http: httpx.Client
) -> None:
    """The outbox keeps the event with the state while the sidecar is down, then publishes it."""
    stack = platform.stack
    national_id = new_patient_id()
    stack.stop("masterdata-dapr")
    try:
        assert put_person(http, platform, national_id).status_code == 200
        stored = platform.db("masterdata").persons.find_one({"_id": national_id})
        assert len(stored["_outbox"]) == 1
    finally:
        stack.start("masterdata-dapr")
    eventually(lambda: projected(platform, national_id), timeout=40)


# -- policy ----------------------------------------------------------------------------------


def test_journal_read_asks_opa_and_returns_the_decision_id(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144901"
    platform.relate(patient, hpr=hpr)
    created = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        json=document_reference(patient),
        headers=gp_headers(platform, hpr),
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]

    read = http.get(f"{platform.url('journal')}{location}", headers=gp_headers(platform, hpr))
    assert read.status_code == 200
    assert read.json()["subject"]["reference"] == f"Patient/{patient}"
    assert read.headers["akson-decision-id"]

    # Denied reads look exactly like reads of unknown ids (404 OperationOutcome); the decision
    # (with its reasons) is in the decision log under the returned id.
    stranger = http.get(
        f"{platform.url('journal')}{location}",
        headers=gp_headers(platform, "9144999", unit="unit-other"),
    )
    assert stranger.status_code == 404
    assert stranger.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert stranger.json()["resourceType"] == "OperationOutcome"
    assert stranger.headers["akson-decision-id"]
    assert "content" not in stranger.text


def test_enforced_decision_ids_are_published_for_reconciliation(
    platform: Platform, http: httpx.Client
) -> None:
    """Double recording: the journal publishes the ids of the decisions it enforced (allow and
    deny), batched, on `policy.decision.enforced`, with no patient or subject in the event."""
    patient, hpr = new_patient_id(), "9144903"
    platform.relate(patient, hpr=hpr)
    created = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        json=document_reference(patient),
        headers=gp_headers(platform, hpr),
    )
    assert created.status_code == 201, created.text
    url = f"{platform.url('journal')}{created.headers['location']}"
    allowed = http.get(url, headers=gp_headers(platform, hpr))
    denied = http.get(url, headers=gp_headers(platform, "9144998", unit="unit-other"))
    assert (allowed.status_code, denied.status_code) == (200, 404)  # hidden reads as unknown
    # the create took two decisions: the write and the read of what it answered
    ids = [
        i.strip()
        for r in (created, allowed, denied)
        for i in r.headers["akson-decision-id"].split(",")
    ]
    assert all(ids) and len(ids) == 4

    def all_published() -> str | None:
        text = platform.stream("policy.decision.enforced")
        return text if all(i in text for i in ids) else None

    published = eventually(all_published)
    assert patient not in published and hpr not in published


def test_with_opa_stopped_reads_are_denied_and_return_no_data(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144902"
    platform.relate(patient, hpr=hpr)
    secret_text = "Pasienten har diabetes type 2."
    created = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        json=document_reference(patient, secret_text),
        headers=gp_headers(platform, hpr),
    )
    assert created.status_code == 201
    url = f"{platform.url('journal')}{created.headers['location']}"
    platform.stack.stop("opa")
    try:
        denied = http.get(url, headers=gp_headers(platform, hpr))
        written = http.post(
            f"{platform.url('journal')}/fhir/R4/DocumentReference",
            json=document_reference(patient),
            headers=gp_headers(platform, hpr),
        )
    finally:
        platform.stack.start("opa")
    assert denied.status_code == 503
    assert denied.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert denied.json()["resourceType"] == "OperationOutcome"
    assert "policy_unavailable" in denied.json()["issue"][0]["diagnostics"]
    encoded = document_reference(patient, secret_text)["content"][0]["attachment"]["data"]
    assert encoded not in denied.text and "Patient/" not in denied.text
    assert written.status_code == 503
    stored = platform.db("journal").resources
    assert stored.count_documents({"patient": patient, "type": "DocumentReference"}) == 1
    assert http.get(url, headers=gp_headers(platform, hpr)).status_code == 200


# -- decision log ----------------------------------------------------------------------------


def test_decision_log_reaches_audit_with_clinical_content_erased(
    platform: Platform, http: httpx.Client
) -> None:
    patient = new_patient_id()
    policy_input = {
        "subject": {
            "id": "hpr:9144903",
            "kind": "practitioner",
            "hpr_number": "9144903",
            "profession": "LE",
            "unit": "unit-gp-1",
        },
        "action": "write",
        "resource": {
            "type": "DocumentReference",
            "patient": patient,
            "category": "general",
            "content": "Pasienten har depresjon.",
            "text": "Notat",
        },
        "context": {"care_relations": [], "note": "klinisk merknad"},
    }
    answer = platform.decide(policy_input)
    decision_id = answer["decision_id"]
    decisions = platform.db("audit").decisions
    stored = eventually(lambda: decisions.find_one({"_id": decision_id}), timeout=30)
    # the kept, hash-chained record (see services/audit/audit/records.py)
    logged = stored["record"]
    assert stored["position"] >= 1 and len(stored["hash"]) == 64
    assert logged["input"]["resource"]["patient"] == patient
    assert "content" not in logged["input"]["resource"]
    assert "text" not in logged["input"]["resource"]
    assert "note" not in logged["input"]["context"]
    assert "depresjon" not in str(stored) and "klinisk" not in str(stored)
    assert logged["result"]["allow"] is False


def test_audit_refuses_decision_logs_from_anyone_but_opa(
    platform: Platform, http: httpx.Client
) -> None:
    url = f"{platform.url('audit')}/opa/decision-logs"
    assert http.post(url, json=[{"decision_id": "x"}]).status_code == 401
    forged = http.post(url, json=[{"decision_id": "x"}], headers={"authorization": "Bearer wrong"})
    assert forged.status_code == 401
    assert platform.db("audit").decisions.find_one({"_id": "x"}) is None


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_gets_problem_json_and_stores_nothing(
    platform: Platform, http: httpx.Client
) -> None:
    bad_id = "17858000077"  # control digit off by one
    response = put_person(http, platform, bad_id)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 422
    assert platform.db("masterdata").persons.find_one({"_id": bad_id}) is None

    no_token = http.put(
        f"{platform.url('masterdata')}/persons/{new_patient_id()}", json=person(new_patient_id())
    )
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"].startswith("Bearer")


# -- telemetry and logs ----------------------------------------------------------------------


def log_lines(platform: Platform, process: str) -> list[dict[str, Any]]:
    path = platform.stack.processes[process].log
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def test_trace_context_crosses_the_outbox_and_pub_sub(
    platform: Platform, http: httpx.Client
) -> None:
    trace_id = uuid.uuid4().hex
    national_id = new_patient_id()
    response = http.put(
        f"{platform.url('masterdata')}/persons/{national_id}",
        json=person(national_id),
        headers={
            **registry_headers(platform),
            "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
        },
    )
    assert response.status_code == 200
    eventually(lambda: projected(platform, national_id))

    def handled_in_same_trace() -> list[dict[str, Any]]:
        return [
            line
            for line in log_lines(platform, "journal-app")
            # one event delivered alone, or in a bulk delivery (the request's trace is its own)
            if line.get("msg") in ("event handled", "event batch handled")
            and line.get("trace_id") == trace_id
        ]

    handled = eventually(handled_in_same_trace)
    assert handled[0]["topic"] == "masterdata.person.changed"


def test_no_health_data_or_names_in_any_log(platform: Platform, http: httpx.Client) -> None:
    patient, hpr = new_patient_id(), "9144904"
    platform.relate(patient, hpr=hpr)
    marker = f"Journalnotat-{uuid.uuid4().hex}"
    put_person(http, platform, patient, given_name=marker)
    created = http.post(
        f"{platform.url('journal')}/fhir/R4/DocumentReference",
        json=document_reference(patient, marker),
        headers=gp_headers(platform, hpr),
    )
    assert created.status_code == 201
    http.get(
        f"{platform.url('journal')}{created.headers['location']}", headers=gp_headers(platform, hpr)
    )
    bad = http.put(
        f"{platform.url('masterdata')}/persons/{patient}",
        json=person(patient, given_name=marker, municipality="bad"),
        headers=registry_headers(platform),
    )
    assert bad.status_code == 422 and marker not in bad.text
    eventually(lambda: projected(platform, patient))
    encoded = document_reference(patient, marker)["content"][0]["attachment"]["data"]
    for log_file in (platform.stack.run_dir / "logs").glob("*.log"):
        text = log_file.read_text(errors="replace")
        assert marker not in text and encoded not in text, log_file.name
