"""The access matrix against the running stack (issue 4): every subject × care relation ×
directive state × action × category, with the outcome expected from the law's rules as this
test states them (independently of the Rego), checked on read, search (every page), totals,
the patient summary and writes. Zero unauthorised successes, zero wrongful refusals.

The world: six patients, one per directive state, each with the same documents recorded by
the practitioners who treat them (general notes from the GP office in 4601 and from a GP in
0301, a mental-health note from the mental-health unit, an allergy and a medication entry);
then the directives are registered through the consent service by the citizens themselves.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Platform, eventually
from tests.support import as_organisation_number, new_patient_id

pytestmark = pytest.mark.integration

FHIR = "/fhir/R4"
HERE, THERE = "4601", "0301"
NAV = "999000029"  # the runner's dev NAV client acts for this organisation


@dataclass(frozen=True)
class Staff:
    name: str
    hpr: str
    profession: str
    unit: str
    organisation: str
    municipality: str

    @property
    def unit_number(self) -> str:
        return as_organisation_number(self.unit)

    @property
    def organisation_number(self) -> str:
        return as_organisation_number(self.organisation)


def _staff(name: str, profession: str, unit: str, organisation: str, municipality: str) -> Staff:
    serial = 9_300_000 + int(uuid.uuid4().int % 600_000)
    return Staff(name, str(serial), profession, unit, organisation, municipality)


RUN = uuid.uuid4().hex[:6]
GP = _staff("gp", "LE", f"gp-office-{RUN}", f"gp-org-{RUN}", HERE)
NURSE = _staff("nurse", "SP", f"home-care-{RUN}", f"care-org-{RUN}", HERE)
PHYSIO = _staff("physio", "FT", f"home-care-{RUN}", f"care-org-{RUN}", HERE)
PSYCH = _staff("psych", "PS", f"mental-health-{RUN}", f"mh-org-{RUN}", HERE)
AWAY_GP = _staff("away_gp", "LE", f"gp-away-{RUN}", f"away-org-{RUN}", THERE)
STRANGER = _staff("stranger", "LE", f"er-{RUN}", f"er-org-{RUN}", HERE)
ER_DOC = _staff("er_doc", "LE", f"er-{RUN}", f"er-org-{RUN}", HERE)
TREATING = (GP, NURSE, PHYSIO, PSYCH, AWAY_GP)
STAFF = (*TREATING, STRANGER, ER_DOC)

# Who the law (as we read it) lets see which category, with a care relation and no directive.
PROFESSIONS = {
    "general": {"LE", "SP", "HF", "FT", "JM", "PS", "TL"},
    "critical_info": {"LE", "SP", "HF", "FT", "JM", "PS", "TL", "AA", "ET", "VP"},
    "medication": {"LE", "SP", "HF", "JM", "TL", "VP"},
    "mental_health": {"LE", "PS", "SP"},
}
SENSITIVE = {"mental_health"}
EMERGENCY_CATEGORIES = {"general", "critical_info", "medication"}
STATES = ("none", "block_gp", "block_unit", "reserve_municipal", "consent_nav", "withdrawn_block")


@dataclass(frozen=True)
class Doc:
    type: str
    id: str
    category: str
    author: Staff


@dataclass
class Patient:
    id: str
    state: str
    docs: list[Doc] = field(default_factory=list)


@dataclass(frozen=True)
class Subject:
    """Someone asking: a practitioner, a citizen, or a system client, with request headers."""

    name: str
    headers: dict[str, str]
    staff: Staff | None = None
    citizen: str | None = None
    client: str | None = None
    emergency: bool = False


def expected(subject: Subject, patient: Patient, doc: Doc) -> bool:
    """The matrix's own statement of the rules (not derived from the Rego)."""
    if subject.citizen is not None:
        return subject.citizen == patient.id
    if subject.client is not None:
        return (
            subject.client == "nav" and patient.state == "consent_nav" and doc.category == "general"
        )
    staff = subject.staff
    assert staff is not None
    blocked = (patient.state == "block_gp" and staff is GP) or (
        patient.state == "block_unit" and staff.unit == NURSE.unit
    )
    reserved = (
        patient.state == "reserve_municipal" and staff.municipality != doc.author.municipality
    )
    if subject.emergency:
        # break-glass: clinical profession, coded reason, non-sensitive categories; it
        # overrides blocks and reservations (and is then reviewed)
        return doc.category in EMERGENCY_CATEGORIES
    if staff not in TREATING or blocked or reserved:
        return False
    if staff.profession not in PROFESSIONS[doc.category]:
        return False
    if doc.category in SENSITIVE:
        # a relation in the same unit the note was recorded in: only the mental-health unit
        return staff.unit == doc.author.unit
    return True


def may_write(subject: Subject, patient: Patient) -> bool:
    """A general note: a treating practitioner allowed the category, not blocked."""
    staff = subject.staff
    if staff is None or subject.emergency or staff not in TREATING:
        return False
    blocked = (patient.state == "block_gp" and staff is GP) or (
        patient.state == "block_unit" and staff.unit == NURSE.unit
    )
    return not blocked and staff.profession in PROFESSIONS["general"]


# -- building the world -------------------------------------------------------------------


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **extra}


def staff_token(platform: Platform, staff: Staff, audience: str) -> str:
    return platform.token(
        audience,
        subject=f"hpr:{staff.hpr}",
        kind="practitioner",
        hpr_number=staff.hpr,
        profession=staff.profession,
        unit=staff.unit,
        organisation=staff.organisation,
        municipality=staff.municipality,
    )


def resource_body(kind: str, patient: str, category: str) -> dict[str, Any]:
    subject = {"reference": f"Patient/{patient}"}
    if kind == "AllergyIntolerance":
        return {
            "resourceType": "AllergyIntolerance",
            "patient": subject,
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"text": "Penicillin"},
        }
    if kind == "MedicationStatement":
        return {
            "resourceType": "MedicationStatement",
            "status": "active",
            "subject": subject,
            "medicationCodeableConcept": {"text": "Paracetamol 500 mg"},
        }
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": subject,
        "category": [{"coding": [{"system": "urn:akson:category", "code": category}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(b"Matrix note").decode(),
                }
            }
        ],
    }


# (type, category, author) recorded for every patient
RECORDED = (
    ("DocumentReference", "general", GP),
    ("DocumentReference", "general", AWAY_GP),
    ("DocumentReference", "mental_health", PSYCH),
    ("AllergyIntolerance", "critical_info", GP),
    ("MedicationStatement", "medication", GP),
)


def directive_for(state: str, patient: str) -> dict[str, Any] | None:
    base = {"patient": patient, "period_start": "2020-01-01"}
    if state in ("block_gp", "withdrawn_block"):
        return {**base, "kind": "block", "practitioner": GP.hpr}
    if state == "block_unit":
        return {**base, "kind": "block", "unit": NURSE.unit_number}
    if state == "reserve_municipal":
        return {**base, "kind": "reservation", "scope": "other_municipalities", "categories": []}
    if state == "consent_nav":
        return {
            **base,
            "kind": "consent",
            "recipient_organisation": NAV,
            "purpose": "nav",
            "categories": ["general"],
        }
    return None


@dataclass
class World:
    patients: list[Patient]
    subjects: list[Subject]


@pytest.fixture(scope="module")
def world(platform: Platform) -> Iterator[World]:
    masterdata, journal, consent = (
        platform.url("masterdata"),
        platform.url("journal"),
        platform.url("consent"),
    )
    registry = bearer(
        platform.token(
            "masterdata",
            subject="registry",
            kind="system",
            scope="Patient.write CareRelation.write",
        )
    )
    writers = {s: bearer(staff_token(platform, s, "journal")) for s in TREATING}
    patients = [Patient(new_patient_id(), state) for state in STATES]
    with httpx.Client(timeout=20) as http:
        for patient in patients:
            answer = http.put(
                f"{masterdata}/persons/{patient.id}",
                json={
                    "national_id": patient.id,
                    "given_name": "Matrise",
                    "family_name": "Syntetisk",
                    "municipality": HERE,
                },
                headers=registry,
            )
            assert answer.status_code in (200, 201, 204), answer.text
            relations: list[dict[str, Any]] = [
                {"kind": "gp_list", "practitioner": GP.hpr, "unit": GP.unit_number},
                {"kind": "home_care", "unit": NURSE.unit_number},
                {"kind": "mental_health", "unit": PSYCH.unit_number},
                {"kind": "gp_list", "practitioner": AWAY_GP.hpr, "unit": AWAY_GP.unit_number},
            ]
            for relation in relations:
                relation_id = f"rel-{uuid.uuid4().hex[:12]}"
                answer = http.put(
                    f"{masterdata}/care-relations/{relation_id}",
                    json={
                        "relation_id": relation_id,
                        "patient": patient.id,
                        "period_start": "2020-01-01",
                        **relation,
                    },
                    headers=registry,
                )
                assert answer.status_code == 204, answer.text
        for patient in patients:
            for kind, category, author in RECORDED:
                body = resource_body(kind, patient.id, category)

                def record(kind: str = kind, body: Any = body, author: Staff = author) -> Any:
                    answer = http.post(
                        f"{journal}{FHIR}/{kind}",
                        json=body,
                        headers=writers[author],
                    )
                    return answer if answer.status_code == 201 else None

                created = eventually(record, timeout=60)
                patient.docs.append(Doc(kind, created.json()["id"], category, author))
        for patient in patients:
            directive = directive_for(patient.state, patient.id)
            if directive is None:
                continue
            citizen = bearer(platform.token("consent", subject=patient.id, kind="citizen"))
            answer = http.post(f"{consent}/directives", json=directive, headers=citizen)
            assert answer.status_code == 201, answer.text
            if patient.state == "withdrawn_block":
                answer = http.post(
                    f"{consent}{answer.headers['location']}/withdraw",
                    headers={**citizen, "if-match": answer.headers["etag"]},
                )
                assert answer.status_code == 200, answer.text
        # the journal decides from its projection of consent's events: wait until it has them
        eventually(lambda: _directives_projected(http, journal, writers[GP], patients), timeout=60)

    subjects = [
        Subject(s.name, bearer(staff_token(platform, s, "journal")), staff=s) for s in STAFF
    ]
    emergency = bearer(
        staff_token(platform, ER_DOC, "journal"), **{"akson-emergency-reason": "life_threatening"}
    )
    subjects.append(Subject("er_doc+emergency", emergency, staff=ER_DOC, emergency=True))
    for patient in patients[:2]:
        token = platform.token("journal", subject=patient.id, kind="citizen")
        subjects.append(Subject(f"citizen:{patient.state}", bearer(token), citizen=patient.id))
    subjects += [
        Subject(
            "nav",
            bearer(
                platform.token("journal", subject="nav", kind="system", client="nav", scope=""),
                **{"akson-purpose": "nav"},
            ),
            client="nav",
        ),
        Subject(
            "lab",
            bearer(
                platform.token(
                    "journal",
                    subject="lab",
                    kind="system",
                    client="lab",
                    scope="DiagnosticReport.write Observation.write",
                )
            ),
            client="lab",
        ),
        Subject(
            "auditor",
            bearer(
                platform.token("journal", subject="aud", kind="system", client="auditor", scope="")
            ),
            client="auditor",
        ),
    ]
    yield World(patients, subjects)


def _directives_projected(
    http: httpx.Client, journal: str, gp: dict[str, str], patients: list[Patient]
) -> bool:
    """True once the GP's reads reflect the block (denied) and the withdrawn block (allowed)."""
    by_state = {p.state: p for p in patients}
    blocked, withdrawn = by_state["block_gp"], by_state["withdrawn_block"]
    first = f"{journal}{FHIR}/DocumentReference/"
    return (
        http.get(first + blocked.docs[0].id, headers=gp).status_code in (403, 404)
        and http.get(first + withdrawn.docs[0].id, headers=gp).status_code == 200
    )


# -- the checks ----------------------------------------------------------------------------


def search_all(
    http: httpx.Client, url: str, headers: dict[str, str], params: dict[str, str]
) -> tuple[int, list[str], list[int]]:
    """Follow every next link with a small page size: (status, ids in order, totals seen)."""
    answer = http.get(url, params={**params, "_count": "2"}, headers=headers)
    if answer.status_code != 200:
        return answer.status_code, [], []
    ids: list[str] = []
    totals: list[int] = []
    while True:
        bundle = answer.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        totals.append(bundle.get("total", -1))
        ids += [
            e["resource"]["id"]
            for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"
        ]
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            return 200, ids, totals
        nxt = following[0]
        answer = http.get(
            nxt if nxt.startswith("http") else url.split(FHIR)[0] + nxt, headers=headers
        )
        assert answer.status_code == 200, answer.text


def test_reads_search_paging_totals_and_summary_agree_with_the_matrix(
    platform: Platform, world: World, http: httpx.Client
) -> None:
    journal = platform.url("journal")
    wrong: list[str] = []
    cells = 0
    for subject in world.subjects:
        for patient in world.patients:
            allowed = {d.id for d in patient.docs if expected(subject, patient, d)}
            readable = set()
            for doc in patient.docs:
                cells += 1
                answer = http.get(f"{journal}{FHIR}/{doc.type}/{doc.id}", headers=subject.headers)
                if answer.status_code == 200:
                    readable.add(doc.id)
                    assert answer.json()["id"] == doc.id
                else:
                    assert answer.status_code in (403, 404), answer.text
                    assert doc.id not in answer.text  # a refusal carries no data
                if (answer.status_code == 200) != (doc.id in allowed):
                    verdict = "UNAUTHORISED SUCCESS" if answer.status_code == 200 else "refused"
                    wrong.append(
                        f"read {verdict}: {subject.name} {patient.state} {doc.type}/{doc.category}"
                        f" by {doc.author.name}"
                    )
            found: set[str] = set()
            for kind in {d.type for d in patient.docs}:
                status, ids, totals = search_all(
                    http, f"{journal}{FHIR}/{kind}", subject.headers, {"patient": patient.id}
                )
                visible = {d.id for d in patient.docs if d.type == kind} & allowed
                if status != 200:
                    # refusing the whole search is right only when nothing of that type is visible
                    if visible:
                        wrong.append(
                            f"search refused ({status}): {subject.name} {patient.state} {kind}"
                        )
                    continue
                if len(ids) != len(set(ids)):
                    wrong.append(f"search repeats entries: {subject.name} {patient.state} {kind}")
                if set(totals) != {len(ids)}:
                    where = f"{subject.name} {patient.state} {kind}"
                    wrong.append(f"search total {totals} != {len(ids)} entries: {where}")
                found |= set(ids)
            if found != readable:
                leaked = found - allowed
                wrong.append(
                    f"search ≠ read for {subject.name} {patient.state}: "
                    f"{len(leaked)} unauthorised, {len(readable - found)} missing"
                )
            summary = http.get(
                f"{journal}{FHIR}/Patient/{patient.id}/$summary", headers=subject.headers
            )
            if summary.status_code == 200:
                in_summary = {
                    e["resource"]["id"]
                    for e in summary.json().get("entry", [])
                    if e["resource"]["resourceType"] != "Patient"
                }
                if in_summary - allowed:
                    wrong.append(
                        f"summary UNAUTHORISED SUCCESS: {subject.name} {patient.state} "
                        f"{len(in_summary - allowed)} entries"
                    )
                if in_summary != allowed:
                    wrong.append(f"summary ≠ read for {subject.name} {patient.state}")
            elif allowed:
                wrong.append(
                    f"summary refused ({summary.status_code}): {subject.name} {patient.state}"
                )
    assert cells == len(world.subjects) * len(world.patients) * len(RECORDED)
    assert not wrong, f"{len(wrong)} of {cells} cells wrong:\n" + "\n".join(wrong)


def test_writes_agree_with_the_matrix(platform: Platform, world: World, http: httpx.Client) -> None:
    journal = platform.url("journal")
    wrong = []
    for subject in world.subjects:
        for patient in world.patients:
            answer = http.post(
                f"{journal}{FHIR}/DocumentReference",
                json=resource_body("DocumentReference", patient.id, "general"),
                headers=subject.headers,
            )
            assert answer.status_code in (201, 403), answer.text
            if (answer.status_code == 201) != may_write(subject, patient):
                wrong.append(f"write {answer.status_code}: {subject.name} {patient.state}")
    assert not wrong, "\n".join(wrong)


def test_every_subject_in_the_matrix_is_both_allowed_and_refused_somewhere(world: World) -> None:
    """The matrix is only worth something if it has both outcomes for the practitioners."""
    for subject in world.subjects:
        outcomes = {expected(subject, p, d) for p in world.patients for d in p.docs}
        if subject.staff is not None or subject.citizen is not None or subject.client == "nav":
            assert outcomes == {True, False}, subject.name


def test_opa_stopped_mid_run_refuses_every_journal_request_without_data(
    platform: Platform, world: World, http: httpx.Client
) -> None:
    """Reads, searches, summaries and writes keep coming while OPA is stopped and restarted:
    inside the outage every answer is 503 problem+json with no identifier of any record."""
    journal = platform.url("journal")
    gp = next(s for s in world.subjects if s.name == "gp")
    patient = next(p for p in world.patients if p.state == "none")
    doc = patient.docs[0]
    requests: list[tuple[str, str, Any]] = [
        ("GET", f"{journal}{FHIR}/{doc.type}/{doc.id}", None),
        ("GET", f"{journal}{FHIR}/DocumentReference?patient={patient.id}", None),
        ("GET", f"{journal}{FHIR}/Patient/{patient.id}/$summary", None),
        (
            "POST",
            f"{journal}{FHIR}/DocumentReference",
            resource_body("DocumentReference", patient.id, "general"),
        ),
    ]
    secrets = {d.id for d in patient.docs}

    def sweep() -> list[httpx.Response]:
        return [http.request(m, url, json=body, headers=gp.headers) for m, url, body in requests]

    def total() -> int:
        answer = http.get(requests[1][1], headers=gp.headers)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["total"])

    assert [r.status_code for r in sweep()] == [200, 200, 200, 201]
    total_before = total()
    platform.stack.stop("opa")
    try:
        during = [answer for _ in range(3) for answer in sweep()]
    finally:
        platform.stack.start("opa")
    for answer in during:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].split(";")[0] in (
            "application/problem+json",
            "application/fhir+json",
        )
        assert not any(secret in answer.text for secret in secrets), answer.text
    eventually(lambda: http.get(requests[0][1], headers=gp.headers).status_code == 200)
    # the writes refused during the outage stored nothing
    assert total() == total_before
