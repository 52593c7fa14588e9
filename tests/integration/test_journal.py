"""The journal through the real stack: FHIR R4 resources, versions, search that never reveals
what the caller may not see, the patient summary, events that carry no patient, emergency
access.

Tests marked ``new_policy`` in their docstring rely on the issue-4 policy (categories
critical_info/medication/lab_result/visit, withheld documents, directives, emergency access);
the others pass on the foundation policy too.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Platform, eventually
from tests.support import as_organisation_number, new_patient_id

pytestmark = pytest.mark.integration

FHIR = "application/fhir+json"
ORG = "974760673"
REGISTRY_SCOPES = "Patient.write CareRelation.write"
LAB_SCOPES = "DiagnosticReport.write Observation.write"
_hpr = iter(range(9150000, 9159999))


# -- helpers -----------------------------------------------------------------------------------


def new_hpr() -> str:
    return str(next(_hpr))


def practitioner(
    platform: Platform,
    hpr: str,
    *,
    profession: str = "LE",
    unit: str = "unit-gp-1",
    municipality: str = "4601",
) -> dict[str, str]:
    token = platform.token(
        "journal",
        subject=f"hpr:{hpr}",
        kind="practitioner",
        hpr_number=hpr,
        profession=profession,
        organisation=ORG,
        unit=unit,
        municipality=municipality,
    )
    return {"authorization": f"Bearer {token}"}


def citizen(platform: Platform, national_id: str) -> dict[str, str]:
    token = platform.token("journal", subject=national_id, kind="citizen")
    return {"authorization": f"Bearer {token}"}


def lab(platform: Platform) -> dict[str, str]:
    token = platform.token("journal", subject="lab", kind="system", scope=LAB_SCOPES)
    return {"authorization": f"Bearer {token}"}


def registry(platform: Platform) -> dict[str, str]:
    token = platform.token(
        "masterdata", subject="folkeregister-sync", kind="system", scope=REGISTRY_SCOPES
    )
    return {"authorization": f"Bearer {token}"}


def note(
    patient: str,
    *,
    category: str = "general",
    text: str = "Kontroll hos fastlege.",
    date: str = "2025-03-01T10:00:00+01:00",
    withheld: bool = False,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient}"},
        "date": date,
        "type": {"coding": [{"system": "urn:akson:document-type", "code": "note"}]},
        "category": [{"coding": [{"system": "urn:akson:category", "code": category}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }
    if withheld:
        resource["meta"] = {
            "security": [{"system": "urn:akson:security", "code": "withheld-from-patient"}]
        }
    return resource


def base(platform: Platform) -> str:
    return f"{platform.url('journal')}/fhir/R4"


def create(
    http: httpx.Client, platform: Platform, resource: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    answer = http.post(
        f"{base(platform)}/{resource['resourceType']}",
        content=json.dumps(resource),
        headers={**headers, "content-type": FHIR},
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    if created["resourceType"] == "OperationOutcome":
        # a writer that may not read it back gets no content: its id is in Location
        return {"id": answer.headers["location"].rsplit("/", 1)[-1]}
    return created


def search(
    http: httpx.Client,
    platform: Platform,
    resource_type: str,
    headers: dict[str, str],
    **params: Any,
) -> dict[str, Any]:
    answer = http.get(f"{base(platform)}/{resource_type}", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == f"{FHIR}; charset=utf-8"
    bundle: dict[str, Any] = answer.json()
    return bundle


def ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle["link"]:
        if link["relation"] == "next":
            return str(link["url"])
    return None


def all_pages(http: httpx.Client, first: dict[str, Any], headers: dict[str, str]) -> list[str]:
    found, bundle = ids(first), first
    while (url := next_link(bundle)) is not None:
        bundle = http.get(url, headers=headers).json()
        found += ids(bundle)
    return found


# -- create, read, update, history --------------------------------------------------------------


def test_create_read_and_versioned_update_with_if_match(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    gp = practitioner(platform, hpr)
    answer = http.post(
        f"{base(platform)}/DocumentReference",
        content=json.dumps(note(patient, text="Første versjon.")),
        headers={**gp, "content-type": FHIR},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["etag"] == 'W/"1"'
    assert answer.headers["content-type"] == f"{FHIR}; charset=utf-8"
    created = answer.json()
    document_id = created["id"]
    assert answer.headers["location"] == f"/fhir/R4/DocumentReference/{document_id}"
    assert created["meta"]["versionId"] == "1"
    url = f"{base(platform)}/DocumentReference/{document_id}"

    read = http.get(url, headers=gp)
    assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
    assert read.headers["akson-decision-id"]

    changed = note(patient, text="Andre versjon.")
    changed["id"] = document_id
    missing = http.put(url, content=json.dumps(changed), headers={**gp, "content-type": FHIR})
    assert missing.status_code == 428
    assert missing.json()["resourceType"] == "OperationOutcome"
    stale = http.put(
        url, content=json.dumps(changed), headers={**gp, "content-type": FHIR, "if-match": 'W/"7"'}
    )
    assert stale.status_code == 412
    updated = http.put(
        url, content=json.dumps(changed), headers={**gp, "content-type": FHIR, "if-match": 'W/"1"'}
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == 'W/"2"'
    # the old ETag no longer works
    again = http.put(
        url, content=json.dumps(changed), headers={**gp, "content-type": FHIR, "if-match": 'W/"1"'}
    )
    assert again.status_code == 412

    history = http.get(f"{url}/_history", headers=gp).json()
    assert history["type"] == "history" and history["total"] == 2
    versions = [e["resource"]["meta"]["versionId"] for e in history["entry"]]
    assert versions == ["2", "1"]
    changed_by = history["entry"][0]["resource"]["meta"]["extension"][0]
    assert changed_by["valueReference"]["reference"] == f"Practitioner/{hpr}"
    first = http.get(f"{url}/_history/1", headers=gp)
    assert first.status_code == 200 and first.headers["etag"] == 'W/"1"'
    data = first.json()["content"][0]["attachment"]["data"]
    assert base64.b64decode(data) == "Første versjon.".encode()
    assert http.get(f"{url}/_history/3", headers=gp).status_code == 404


def test_delete_marks_entered_in_error_and_nothing_is_removed(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    gp = practitioner(platform, hpr)
    document_id = create(http, platform, note(patient), gp)["id"]
    url = f"{base(platform)}/DocumentReference/{document_id}"

    deleted = http.delete(url, headers=gp)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "entered-in-error"
    assert deleted.headers["etag"] == 'W/"2"'
    assert http.get(url, headers=gp).json()["status"] == "entered-in-error"
    assert search(http, platform, "DocumentReference", gp, patient=patient)["total"] == 0
    wrong = search(
        http, platform, "DocumentReference", gp, patient=patient, status="entered-in-error"
    )
    assert ids(wrong) == [document_id]
    assert platform.db("journal").resources.find_one({"_id": document_id})["version"] == 2
    assert platform.db("journal").resource_versions.find_one({"_id": f"{document_id}/1"})


# -- search ------------------------------------------------------------------------------------


def test_search_pages_with_totals_and_next_links(platform: Platform, http: httpx.Client) -> None:
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    gp = practitioner(platform, hpr)
    created = [
        create(http, platform, note(patient, date=f"2025-0{month}-15T10:00:00Z"), gp)["id"]
        for month in range(1, 6)
    ]
    first = search(http, platform, "DocumentReference", gp, patient=patient, _count=2)
    assert first["type"] == "searchset" and first["total"] == 5
    assert len(first["entry"]) == 2
    # newest first
    assert ids(first) == [created[4], created[3]]
    every = all_pages(http, first, gp)
    assert every == list(reversed(created))

    spring = search(
        http,
        platform,
        "DocumentReference",
        gp,
        patient=f"Patient/{patient}",
        date=["ge2025-02-01", "le2025-04-15"],
    )
    assert spring["total"] == 3 and set(ids(spring)) == set(created[1:4])
    typed = search(
        http,
        platform,
        "DocumentReference",
        gp,
        patient=patient,
        type="urn:akson:document-type|note",
    )
    assert typed["total"] == 5
    other = search(http, platform, "DocumentReference", gp, patient=patient, category="dental")
    assert other["total"] == 0 and "entry" not in other or other["entry"] == []


def test_search_refuses_unknown_parameters_and_a_missing_patient(
    platform: Platform, http: httpx.Client
) -> None:
    gp = practitioner(platform, new_hpr())
    no_patient = http.get(f"{base(platform)}/DocumentReference", headers=gp)
    assert no_patient.status_code == 400
    assert no_patient.json()["resourceType"] == "OperationOutcome"
    unknown = http.get(
        f"{base(platform)}/DocumentReference",
        params={"patient": new_patient_id(), "name": "x"},
        headers=gp,
    )
    assert unknown.status_code == 400


def test_filtered_search_total_and_paging_exclude_what_the_caller_may_not_see(
    platform: Platform, http: httpx.Client
) -> None:
    """A health worker (HF) with a relation may see general notes, not mental health ones:
    the total, the pages and the next links count only the general ones."""
    patient, doctor, worker = new_patient_id(), new_hpr(), new_hpr()
    # sensitive notes need a relation with the writer's own unit (the GP office)
    platform.relate(patient, hpr=doctor, unit="unit-gp-1")
    platform.relate(patient, hpr=worker, kind="home_care")
    gp = practitioner(platform, doctor)
    hf = practitioner(platform, worker, profession="HF", unit="unit-home-care")
    general = [
        create(http, platform, note(patient, date=f"2025-01-0{day}T10:00:00Z"), gp)["id"]
        for day in (1, 3, 5)
    ]
    hidden = [
        create(
            http,
            platform,
            note(
                patient,
                category="mental_health",
                date=f"2025-01-0{day}T10:00:00Z",
                text="Depresjon.",
            ),
            gp,
        )["id"]
        for day in (2, 4)
    ]
    assert search(http, platform, "DocumentReference", gp, patient=patient)["total"] == 5

    first = search(http, platform, "DocumentReference", hf, patient=patient, _count=2)
    assert first["total"] == 3
    assert len(first["entry"]) == 2
    seen = all_pages(http, first, hf)
    assert sorted(seen) == sorted(general)
    assert "Depresjon" not in json.dumps(first)
    mental = search(
        http, platform, "DocumentReference", hf, patient=patient, category="mental_health"
    )
    assert mental["total"] == 0 and not mental.get("entry")

    # a hidden document reads exactly like one that does not exist
    denied = http.get(f"{base(platform)}/DocumentReference/{hidden[0]}", headers=hf)
    unknown_id = str(uuid.uuid4())
    unknown = http.get(f"{base(platform)}/DocumentReference/{unknown_id}", headers=hf)
    assert denied.status_code == unknown.status_code == 404
    assert denied.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"] == "not-found"
    assert denied.text.replace(hidden[0], "X") == unknown.text.replace(unknown_id, "X")
    assert (
        http.get(f"{base(platform)}/DocumentReference/{hidden[0]}/_history", headers=hf).status_code
        == 404
    )

    stranger = practitioner(platform, new_hpr(), unit="unit-elsewhere")
    nothing = search(http, platform, "DocumentReference", stranger, patient=patient)
    assert nothing["total"] == 0 and not nothing.get("entry")


def test_a_citizen_reads_their_own_record_only(platform: Platform, http: httpx.Client) -> None:
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    gp = practitioner(platform, hpr)
    document_id = create(http, platform, note(patient), gp)["id"]
    own = citizen(platform, patient)
    # without patient=, a citizen's search is their own record
    mine = search(http, platform, "DocumentReference", own)
    assert ids(mine) == [document_id]
    assert (
        http.get(f"{base(platform)}/DocumentReference/{document_id}", headers=own).status_code
        == 200
    )
    someone_else = citizen(platform, new_patient_id())
    assert (
        http.get(
            f"{base(platform)}/DocumentReference/{document_id}", headers=someone_else
        ).status_code
        == 404
    )
    assert search(http, platform, "DocumentReference", someone_else, patient=patient)["total"] == 0
    written = http.post(
        f"{base(platform)}/DocumentReference",
        content=json.dumps(note(patient)),
        headers={**own, "content-type": FHIR},
    )
    assert written.status_code == 403


def test_a_document_withheld_from_the_patient_is_not_shown_to_them(
    platform: Platform, http: httpx.Client
) -> None:
    """new_policy: withheld_from_patient denies the citizen."""
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    gp = practitioner(platform, hpr)
    shown = create(http, platform, note(patient), gp)["id"]
    withheld = create(http, platform, note(patient, withheld=True), gp)["id"]
    assert search(http, platform, "DocumentReference", gp, patient=patient)["total"] == 2
    own = citizen(platform, patient)
    mine = search(http, platform, "DocumentReference", own, patient=patient)
    assert mine["total"] == 1 and ids(mine) == [shown]
    assert (
        http.get(f"{base(platform)}/DocumentReference/{withheld}", headers=own).status_code == 404
    )


# -- lab results --------------------------------------------------------------------------------


def lab_report(patient: str) -> tuple[dict[str, Any], dict[str, Any]]:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2025-02-01T08:00:00Z",
        "valueQuantity": {"value": 6.1, "unit": "%"},
    }
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2025-02-01T08:00:00Z",
    }
    return observation, report


def test_a_lab_system_delivers_results_but_cannot_read_notes(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    gp = practitioner(platform, hpr)
    note_id = create(http, platform, note(patient), gp)["id"]
    system = lab(platform)
    observation, report = lab_report(patient)
    observation_id = create(http, platform, observation, system)["id"]
    report["result"] = [{"reference": f"Observation/{observation_id}"}]
    report_id = create(http, platform, report, system)["id"]
    stored = platform.db("journal").resources.find_one({"_id": report_id})
    assert stored["category"] == "lab_result" and stored["patient"] == patient

    assert (
        http.get(f"{base(platform)}/DocumentReference/{note_id}", headers=system).status_code == 404
    )
    notes = search(http, platform, "DocumentReference", system, patient=patient)
    assert notes["total"] == 0 and not notes.get("entry")
    assert (
        http.get(f"{base(platform)}/DiagnosticReport/{report_id}", headers=system).status_code
        == 404
    )


def test_a_create_sent_again_with_its_idempotency_key_makes_nothing_new(
    platform: Platform, http: httpx.Client
) -> None:
    """A system writer that lost the answer to a create sends it again with the same key: the
    journal answers 200 with the resource the first one made; another key, another writer or
    no key makes a new one; a key that is not plain is a 4xx."""
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    system = lab(platform)
    observation, _ = lab_report(patient)
    url = f"{base(platform)}/Observation"

    def post(headers: dict[str, str], key: str | None) -> httpx.Response:
        extra = {"idempotency-key": key} if key is not None else {}
        return http.post(
            url,
            content=json.dumps(observation),
            headers={**headers, **extra, "content-type": FHIR, "prefer": "return=minimal"},
        )

    key = f"lab-{uuid.uuid4().hex}.1"
    first, again = post(system, key), post(system, key)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    made = first.headers["location"]
    assert again.headers["location"] == made
    other_key = post(system, f"{key}-b")
    assert other_key.status_code == 201 and other_key.headers["location"] != made
    # the same key from a practitioner is hers, not the lab's
    mine = post(practitioner(platform, hpr), key)
    assert mine.status_code == 201 and mine.headers["location"] != made
    assert post(system, None).status_code == 201
    assert post(system, "no spaces or slashes/").status_code in (400, 422)
    held = platform.db("journal").resources.count_documents(
        {"patient": patient, "type": "Observation"}
    )
    assert held == 4


def test_treating_personnel_look_up_lab_results(platform: Platform, http: httpx.Client) -> None:
    """new_policy: category lab_result for practitioners."""
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    observation, report = lab_report(patient)
    report_id = create(http, platform, report, lab(platform))["id"]
    gp = practitioner(platform, hpr)
    results = search(http, platform, "DiagnosticReport", gp, patient=patient, category="lab_result")
    assert ids(results) == [report_id]


# -- medication list, critical information, summary --------------------------------------------


def medication(patient: str, code: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "status": status,
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.whocc.no/atc", "code": code}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2025-01-10",
    }


def allergy(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "criticality": "high",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]},
        "patient": {"reference": f"Patient/{patient}"},
        "recordedDate": "2024-06-01",
    }


def test_the_medication_list_keeps_every_version_and_who_changed_it(
    platform: Platform, http: httpx.Client
) -> None:
    """new_policy: category medication."""
    patient, first, second = new_patient_id(), new_hpr(), new_hpr()
    platform.relate(patient, hpr=first)
    platform.relate(patient, hpr=second)
    gp, locum = practitioner(platform, first), practitioner(platform, second)
    statement = create(http, platform, medication(patient, "C07AB02"), gp)
    create(http, platform, medication(patient, "A10BA02"), gp)
    url = f"{base(platform)}/MedicationStatement/{statement['id']}"
    stopped = medication(patient, "C07AB02", status="completed")
    answer = http.put(
        url,
        content=json.dumps(stopped),
        headers={**locum, "content-type": FHIR, "if-match": 'W/"1"'},
    )
    assert answer.status_code == 200, answer.text
    current = search(http, platform, "MedicationStatement", gp, patient=patient, status="active")
    assert current["total"] == 1
    history = http.get(f"{url}/_history", headers=gp).json()
    writers = [
        e["resource"]["meta"]["extension"][0]["valueReference"]["reference"]
        for e in history["entry"]
    ]
    assert writers == [f"Practitioner/{second}", f"Practitioner/{first}"]


def test_the_patient_summary_holds_only_what_the_caller_may_see(
    platform: Platform, http: httpx.Client
) -> None:
    """Critical information, current medications and documents, each as the caller may see
    them (a mental-health note only for the GP whose office holds the relation)."""
    patient, doctor, worker = new_patient_id(), new_hpr(), new_hpr()
    platform.relate(patient, hpr=doctor, unit="unit-gp-1")
    platform.relate(patient, hpr=worker)
    gp = practitioner(platform, doctor)
    general = create(http, platform, note(patient), gp)["id"]
    mental = create(http, platform, note(patient, category="mental_health"), gp)["id"]
    allergy_id = create(http, platform, allergy(patient), gp)["id"]
    active = create(http, platform, medication(patient, "C07AB02"), gp)["id"]
    stopped = create(http, platform, medication(patient, "N02BE01", status="completed"), gp)["id"]

    def summary(headers: dict[str, str]) -> set[str]:
        answer = http.get(f"{base(platform)}/Patient/{patient}/$summary", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["resourceType"] == "Bundle"
        return {e["resource"]["id"] for e in answer.json().get("entry", [])}

    assert summary(gp) == {general, mental, allergy_id, active}
    hf = practitioner(platform, worker, profession="HF", unit="unit-home-care")
    seen = summary(hf)
    assert mental not in seen and stopped not in seen
    assert {general, allergy_id, active} <= seen
    stranger = practitioner(platform, new_hpr(), unit="unit-elsewhere")
    assert summary(stranger) == set()


# -- visits and supplies -------------------------------------------------------------------------


def visit(patient: str, performer: str, unit: str, status: str = "in-progress") -> dict[str, Any]:
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": status,
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "HH",
        },
        "type": [{"coding": [{"system": "urn:akson:visit-type", "code": "home_nursing"}]}],
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"individual": {"reference": f"Practitioner/{performer}"}}],
        "serviceProvider": {"reference": f"Organization/{as_organisation_number(unit)}"},
        "period": {"start": "2025-03-01T09:00:00+01:00"},
    }
    if status == "finished":
        encounter["period"]["end"] = "2025-03-01T09:40:00+01:00"
    return encounter


def test_a_finished_visit_emits_its_completion_without_the_patient(
    platform: Platform, http: httpx.Client
) -> None:
    """new_policy: category visit."""
    patient, nurse = new_patient_id(), new_hpr()
    unit = "unit-home-care"
    platform.relate(patient, unit=unit, kind="home_care")
    sp = practitioner(platform, nurse, profession="SP", unit=unit)
    encounter = create(http, platform, visit(patient, nurse, unit), sp)
    url = f"{base(platform)}/Encounter/{encounter['id']}"
    finished = visit(patient, nurse, unit, status="finished")
    answer = http.put(
        url, content=json.dumps(finished), headers={**sp, "content-type": FHIR, "if-match": 'W/"1"'}
    )
    assert answer.status_code == 200, answer.text

    def completions() -> list[dict[str, Any]]:
        return [
            e
            for e in platform.events("journal.visit.completed")
            if e["data"]["encounter_id"] == encounter["id"]
        ]

    event = eventually(completions)[0]
    assert event["data"]["version"] == 2
    assert event["data"]["performer"] == nurse
    assert event["data"]["unit"] == as_organisation_number(unit)
    assert event["data"]["visit_type"] == "home_nursing"
    assert event["data"]["status"] == "finished"
    assert patient not in json.dumps(event)

    corrected = http.delete(url, headers=sp)
    assert corrected.status_code == 200
    both = eventually(lambda: (found := completions()) and len(found) >= 2 and found)
    assert both[-1]["data"]["status"] == "entered-in-error" and both[-1]["data"]["version"] == 3
    assert patient not in json.dumps(both)


def test_supply_use_on_a_visit_emits_an_event_without_the_patient(
    platform: Platform, http: httpx.Client
) -> None:
    """new_policy: category visit (the supply record is a write on the Encounter)."""
    patient, nurse = new_patient_id(), new_hpr()
    unit = "unit-home-care"
    platform.relate(patient, unit=unit, kind="home_care")
    sp = practitioner(platform, nurse, profession="SP", unit=unit)
    encounter = create(http, platform, visit(patient, nurse, unit, status="finished"), sp)
    answer = http.post(
        f"{platform.url('journal')}/visits/{encounter['id']}/supplies",
        json=[{"item": "ART-1001", "quantity": 2}, {"item": "ART-2002", "quantity": 1}],
        headers=sp,
    )
    assert answer.status_code == 201, answer.text
    usage_id = answer.json()["usage_id"]
    used = eventually(
        lambda: [
            e for e in platform.events("journal.supplies.used") if e["data"]["usage_id"] == usage_id
        ]
    )[0]
    assert [line["item"] for line in used["data"]["items"]] == ["ART-1001", "ART-2002"]
    assert used["data"]["unit"] == as_organisation_number(unit)
    assert patient not in json.dumps(used) and encounter["id"] not in json.dumps(used)

    stranger = practitioner(platform, new_hpr(), unit="unit-elsewhere")
    refused = http.post(
        f"{platform.url('journal')}/visits/{encounter['id']}/supplies",
        json=[{"item": "ART-1001", "quantity": 1}],
        headers=stranger,
    )
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"


# -- emergency access ----------------------------------------------------------------------------


def test_emergency_access_needs_a_reason_and_emits_an_event(
    platform: Platform, http: httpx.Client
) -> None:
    """new_policy: emergency access with obligations notify_patient, review_emergency_access."""
    patient, doctor = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=doctor)
    document_id = create(http, platform, note(patient), practitioner(platform, doctor))["id"]
    url = f"{base(platform)}/DocumentReference/{document_id}"
    emergency_doctor = practitioner(platform, new_hpr(), unit="unit-emergency-clinic")

    assert http.get(url, headers=emergency_doctor).status_code == 404
    granted = http.get(
        url, headers={**emergency_doctor, "akson-emergency-reason": "unconscious_patient"}
    )
    assert granted.status_code == 200, granted.text
    # the obligations are the caller's to see too: the patient will be told, the access reviewed
    assert granted.headers["akson-obligations"] == "notify_patient,review_emergency_access"
    decision_id = granted.headers["akson-decision-id"]
    event = eventually(
        lambda: [
            e
            for e in platform.events("journal.access.emergency")
            if e["data"]["decision_id"] == decision_id
        ]
    )[0]
    assert event["data"]["patient"] == patient
    assert event["data"]["reason_code"] == "unconscious_patient"
    assert event["data"]["resource_type"] == "DocumentReference"
    unknown_reason = http.get(
        url, headers={**emergency_doctor, "akson-emergency-reason": "curiosity"}
    )
    assert unknown_reason.status_code == 404


# -- consent directives --------------------------------------------------------------------------


def publish_directive(http: httpx.Client, platform: Platform, directive: dict[str, Any]) -> None:
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "akson/consent",
        "type": "consent.directive.changed.v1",
        "subject": directive["patient"],
        "datacontenttype": "application/json",
        "data": directive,
    }
    platform.publish("journal", "consent.directive.changed", envelope)


def test_directives_are_projected_and_stale_versions_ignored(
    platform: Platform, http: httpx.Client
) -> None:
    patient, doctor = new_patient_id(), new_hpr()
    directive = {
        "directive_id": f"dir-{uuid.uuid4().hex[:8]}",
        "patient": patient,
        "kind": "block",
        "practitioner": doctor,
        "period_start": "2020-01-01",
    }
    publish_directive(http, platform, {**directive, "version": 2, "status": "withdrawn"})

    def held() -> Any:
        document = platform.db("journal").patients.find_one({"_id": patient}) or {}
        return list((document.get("directives") or {}).values())

    assert eventually(held)[0]["version"] == 2
    publish_directive(http, platform, {**directive, "version": 1, "status": "active"})
    marker = {**directive, "directive_id": directive["directive_id"] + "-b", "version": 1}
    publish_directive(http, platform, {**marker, "status": "active"})
    eventually(lambda: len(held()) == 2)
    by_id = {d["directive_id"]: d for d in held()}
    assert by_id[directive["directive_id"]]["version"] == 2
    assert by_id[directive["directive_id"]]["status"] == "withdrawn"


def test_a_block_hides_the_record_from_the_blocked_practitioner(
    platform: Platform, http: httpx.Client
) -> None:
    """new_policy: an active block directive wins over the care relation."""
    patient, doctor, other = new_patient_id(), new_hpr(), new_hpr()
    platform.relate(patient, hpr=doctor)
    platform.relate(patient, hpr=other)
    gp = practitioner(platform, doctor)
    document_id = create(http, platform, note(patient), gp)["id"]
    blocked = practitioner(platform, other)
    assert search(http, platform, "DocumentReference", blocked, patient=patient)["total"] == 1
    publish_directive(
        http,
        platform,
        {
            "directive_id": f"dir-{uuid.uuid4().hex[:8]}",
            "version": 1,
            "patient": patient,
            "kind": "block",
            "status": "active",
            "practitioner": other,
            "period_start": "2020-01-01",
        },
    )
    eventually(
        lambda: search(http, platform, "DocumentReference", blocked, patient=patient)["total"] == 0
    )
    url = f"{base(platform)}/DocumentReference/{document_id}"
    assert http.get(url, headers=blocked).status_code == 404
    assert http.get(url, headers=gp).status_code == 200


# -- bad input -----------------------------------------------------------------------------------


def test_invalid_and_oversized_resources_are_refused_without_echo(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    gp = practitioner(platform, hpr)
    marker = f"Hemmelig-{uuid.uuid4().hex}"
    invalid = note(patient, text=marker)
    invalid["date"] = marker
    answer = http.post(
        f"{base(platform)}/DocumentReference",
        content=json.dumps(invalid),
        headers={**gp, "content-type": FHIR},
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == f"{FHIR}; charset=utf-8"
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert marker not in answer.text
    encoded = invalid["content"][0]["attachment"]["data"]
    assert encoded not in answer.text

    huge = note(patient, text="x" * (9 * 1024 * 1024))
    too_large = http.post(
        f"{base(platform)}/DocumentReference",
        content=json.dumps(huge),
        headers={**gp, "content-type": FHIR},
    )
    assert too_large.status_code == 413
    assert too_large.json()["resourceType"] == "OperationOutcome"

    pdf = note(patient)
    pdf["content"][0]["attachment"] = {
        "contentType": "application/pdf",
        "data": base64.b64encode(b"%PDF-1.7\n%test\n").decode(),
    }
    assert create(http, platform, pdf, gp)["content"][0]["attachment"]["contentType"] == (
        "application/pdf"
    )
    unsupported = http.get(f"{base(platform)}/Medication/123", headers=gp)
    assert unsupported.status_code == 404


# -- fail closed ---------------------------------------------------------------------------------


def test_with_opa_stopped_search_and_summary_return_no_data(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), new_hpr()
    platform.relate(patient, hpr=hpr)
    gp = practitioner(platform, hpr)
    create(http, platform, note(patient, text="Skal ikke lekke."), gp)
    empty_patient = new_patient_id()
    platform.stack.stop("opa")
    try:
        found = http.get(
            f"{base(platform)}/DocumentReference", params={"patient": patient}, headers=gp
        )
        nothing = http.get(
            f"{base(platform)}/DocumentReference", params={"patient": empty_patient}, headers=gp
        )
        summary = http.get(f"{base(platform)}/Patient/{patient}/$summary", headers=gp)
    finally:
        platform.stack.start("opa")
    for answer in (found, nothing, summary):
        assert answer.status_code == 503
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert "Patient/" not in answer.text and "entry" not in answer.text
    assert search(http, platform, "DocumentReference", gp, patient=patient)["total"] == 1


def test_the_capability_statement_names_fhir_r4(platform: Platform, http: httpx.Client) -> None:
    answer = http.get(f"{base(platform)}/metadata")
    assert answer.status_code == 200
    statement = answer.json()
    assert statement["fhirVersion"] == "4.0.1"
    assert {r["type"] for r in statement["rest"][0]["resource"]} >= {"Encounter", "Flag"}
