"""Master data on the real stack: persons, practitioners, organisations, care relations, bulk
import, and the protected address that must not leak anywhere."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from akson_common.identifiers import organisation_number_valid
from tests.integration.conftest import Platform, eventually
from tests.integration.test_foundation import gp_headers, person
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

REGISTRY = "Patient.write Patient.read Patient.search CareRelation.write CareRelation.search"
DIRECTORY = "Practitioner.write Organization.write"
NDJSON = {"content-type": "application/x-ndjson"}
_org_serial = iter(range(20_000_000, 30_000_000))
_hpr_serial = iter(range(70_000_000, 80_000_000))


def system(platform: Platform, scope: str) -> dict[str, str]:
    token = platform.token("masterdata", subject="registry-sync", kind="system", scope=scope)
    return {"authorization": f"Bearer {token}"}


def practitioner(platform: Platform, hpr: str) -> dict[str, str]:
    return gp_headers(platform, hpr, unit="unit-x", audience="masterdata")


def citizen(platform: Platform, national_id: str) -> dict[str, str]:
    token = platform.token("masterdata", subject=national_id, kind="citizen")
    return {"authorization": f"Bearer {token}"}


def new_org_number() -> str:
    while not organisation_number_valid(number := f"{next(_org_serial)}0"):
        pass
    return number


def relation(patient: str, hpr: str, **overrides: Any) -> dict[str, Any]:
    return {
        "relation_id": f"rel-{uuid.uuid4().hex[:12]}",
        "patient": patient,
        "kind": "gp_list",
        "practitioner": hpr,
        "period_start": "2020-01-01",
        **overrides,
    }


def ndjson(records: list[Any]) -> bytes:
    return b"".join(
        (r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records
    )


def follow_pages(http: httpx.Client, base: str, first: str, headers: dict[str, str]) -> list[Any]:
    items, url, pages = [], first, 0
    while url:
        page = http.get(f"{base}{url}", headers=headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        url, pages = page.json()["next"], pages + 1
    assert pages > 1
    return items


# -- persons ---------------------------------------------------------------------------------


def test_person_crud_search_by_name_identifier_municipality_with_paging(
    platform: Platform, http: httpx.Client
) -> None:
    base, writer = platform.url("masterdata"), system(platform, REGISTRY)
    family = f"Zq{uuid.uuid4().hex[:8]}"
    ids = sorted(new_patient_id() for _ in range(5))
    for n, national_id in enumerate(ids):
        body = person(national_id, family_name=family, municipality="1804", given_name=f"P{n}")
        saved = http.put(f"{base}/persons/{national_id}", json=body, headers=writer)
        assert saved.status_code == 200, saved.text
    died = http.put(
        f"{base}/persons/{ids[0]}",
        json=person(ids[0], family_name=family, municipality="1804", given_name="P0",
                    date_of_death="2025-03-01"),
        headers=writer,
    )  # fmt: skip
    assert died.json()["date_of_death"] == "2025-03-01" and died.json()["revision"] == 2

    by_name = follow_pages(http, base, f"/persons?name={family.lower()}&_count=2", writer)
    assert [p["national_id"] for p in by_name] == ids
    by_identifier = http.get(
        f"{base}/persons",
        params={"identifier": f"urn:oid:2.16.578.1.12.4.1.4.1|{ids[1]}"},
        headers=writer,
    )
    assert [p["national_id"] for p in by_identifier.json()["items"]] == [ids[1]]
    in_bodo = http.get(f"{base}/persons?municipality=1804&_count=500", headers=writer).json()
    assert set(ids) <= {p["national_id"] for p in in_bodo["items"]} or in_bodo["next"]

    patient = http.get(f"{base}/fhir/R4/Patient/{ids[0]}", headers=writer)
    assert patient.headers["content-type"] == "application/fhir+json; charset=utf-8"
    resource = patient.json()
    assert resource["resourceType"] == "Patient"
    assert resource["identifier"] == [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": ids[0]}]
    assert resource["deceasedDateTime"] == "2025-03-01"
    assert http.get(f"{base}/persons/{new_patient_id()}", headers=writer).status_code == 404


def test_reads_need_a_token_and_the_policy(platform: Platform, http: httpx.Client) -> None:
    base, national_id = platform.url("masterdata"), new_patient_id()
    http.put(f"{base}/persons/{national_id}", json=person(national_id),
             headers=system(platform, REGISTRY))  # fmt: skip
    assert http.get(f"{base}/persons/{national_id}").status_code == 401
    stranger = http.get(f"{base}/persons/{national_id}", headers=practitioner(platform, "4711"))
    assert stranger.status_code == 403
    assert "no_care_relation" in stranger.json()["reasons"]
    other = http.get(f"{base}/persons/{national_id}", headers=citizen(platform, new_patient_id()))
    assert other.status_code == 403
    assert http.get(f"{base}/persons?municipality=4601",
                    headers=practitioner(platform, "4711")).status_code == 403  # fmt: skip
    assert http.get(f"{base}/persons/{national_id}",
                    headers=citizen(platform, national_id)).status_code == 200  # fmt: skip


# -- practitioners and organisations ---------------------------------------------------------


def test_organisations_units_and_practitioners_as_directory_and_fhir(
    platform: Platform, http: httpx.Client
) -> None:
    base, writer = platform.url("masterdata"), system(platform, DIRECTORY)
    owner, unit, hpr = new_org_number(), new_org_number(), str(next(_hpr_serial))
    for body in (
        {"org_number": owner, "name": "Bodø kommune", "municipality": "1804", "on_platform": True},
        {"org_number": unit, "name": "Bodø legevakt", "municipality": "1804", "parent": owner,
         "service_type": "emergency_clinic", "her_id": "8123456", "on_platform": True},
    ):  # fmt: skip
        saved = http.put(f"{base}/organisations/{body['org_number']}", json=body, headers=writer)
        assert saved.status_code == 200, saved.text
    doctor = {
        "hpr_number": hpr,
        "given_name": "Lege",
        "family_name": "Syntetisk",
        "status_from": "2010-01-01",
        "authorisations": [{"profession": "LE", "valid_from": "2010-01-01"}],
        "employments": [{"unit": unit, "period_start": "2015-01-01"}],
    }
    assert http.put(f"{base}/practitioners/{hpr}", json=doctor, headers=writer).status_code == 200

    reader = practitioner(platform, "4712")
    units = http.get(f"{base}/organisations?parent={owner}", headers=reader).json()["items"]
    assert [u["org_number"] for u in units] == [unit]
    organization = http.get(f"{base}/fhir/R4/Organization/{unit}", headers=reader).json()
    assert organization["partOf"] == {"reference": f"Organization/{owner}"}
    assert {"system": "urn:oid:2.16.578.1.12.4.1.2", "value": "8123456"} in organization[
        "identifier"
    ]
    fhir_practitioner = http.get(f"{base}/fhir/R4/Practitioner/{hpr}", headers=reader).json()
    assert fhir_practitioner["qualification"][0]["code"]["coding"][0]["code"] == "LE"
    roles = http.get(f"{base}/fhir/R4/PractitionerRole?practitioner={hpr}", headers=reader).json()
    assert roles["entry"][0]["resource"]["organization"] == {"reference": f"Organization/{unit}"}

    suspended = {**doctor, "status": "suspended", "status_from": date.today().isoformat()}
    assert (
        http.put(f"{base}/practitioners/{hpr}", json=suspended, headers=writer).status_code == 200
    )
    assert http.get(f"{base}/practitioners/{hpr}", headers=reader).json()["status"] == "suspended"

    def published() -> list[dict[str, Any]]:
        text = platform.stream("masterdata.practitioner.changed")
        return [
            json.loads(line)["data"]
            for line in text.splitlines()
            if line.startswith('{"data"') and f'"hpr_number":"{hpr}"' in line
        ]

    events = eventually(lambda: len(published()) == 2 and published())
    # the name is public register data (HPR), carried for citizens' access logs; nothing else
    # personal (birth date, address, contact details)
    assert events[-1] == {
        "hpr_number": hpr, "status": "suspended", "professions": ["LE"], "units": [unit],
        "name": "Lege Syntetisk",
    }  # fmt: skip
    assert http.put(f"{base}/practitioners/{hpr}", json=doctor, headers=reader).status_code == 403
    assert http.get(f"{base}/practitioners/{hpr}",
                    headers=citizen(platform, new_patient_id())).status_code == 403  # fmt: skip


def test_invalid_organisation_number_is_refused_and_nothing_stored(
    platform: Platform, http: httpx.Client
) -> None:
    base = platform.url("masterdata")
    good = new_org_number()
    bad = good[:8] + str((int(good[8]) + 1) % 10)
    body = {"org_number": bad, "name": "X", "municipality": "4601"}
    answer = http.put(f"{base}/organisations/{bad}", json=body, headers=system(platform, DIRECTORY))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert platform.db("masterdata").organisations.find_one({"_id": bad}) is None


# -- care relations --------------------------------------------------------------------------


def test_active_care_relations_and_ending_one(platform: Platform, http: httpx.Client) -> None:
    base, writer = platform.url("masterdata"), system(platform, REGISTRY)
    patient, hpr = new_patient_id(), str(next(_hpr_serial))
    current = relation(patient, hpr)
    past = relation(patient, hpr, period_start="2010-01-01", period_end="2012-01-01")
    for body in (current, past):
        put = http.put(f"{base}/care-relations/{body['relation_id']}", json=body, headers=writer)
        assert put.status_code == 204, put.text
    active = http.get(f"{base}/care-relations?patient={patient}", headers=writer).json()["items"]
    assert [r["relation_id"] for r in active] == [current["relation_id"]]
    # the practitioner of that relation reads their patient's relations; a stranger does not
    mine = http.get(f"{base}/care-relations?patient={patient}", headers=practitioner(platform, hpr))
    assert mine.status_code == 200
    other = practitioner(platform, str(next(_hpr_serial)))
    assert http.get(f"{base}/care-relations?patient={patient}", headers=other).status_code == 403

    too_early = http.post(f"{base}/care-relations/{current['relation_id']}/end",
                          json={"period_end": "2019-12-31"}, headers=writer)  # fmt: skip
    assert too_early.status_code == 422
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    ended = http.post(f"{base}/care-relations/{current['relation_id']}/end",
                      json={"period_end": yesterday}, headers=writer)  # fmt: skip
    # a response body is a read: without CareRelation.read the writer gets the identifier only
    assert ended.status_code == 200 and ended.json() == {"relation_id": current["relation_id"]}
    again = http.post(f"{base}/care-relations/{current['relation_id']}/end",
                      json={"period_end": yesterday},
                      headers=system(platform, f"{REGISTRY} CareRelation.read"))  # fmt: skip
    assert again.status_code == 200 and again.json()["items"][0]["period_end"] == yesterday
    assert http.get(f"{base}/care-relations?patient={patient}", headers=writer).json() == {
        "items": []
    }
    missing = http.post(f"{base}/care-relations/nope/end", json={"period_end": yesterday},
                        headers=writer)  # fmt: skip
    assert missing.status_code == 404
    # the journal's projection (what its access decisions use) follows the end
    eventually(
        lambda: (platform.db("journal").care_relations.find_one({"_id": current["relation_id"]})
                 or {}).get("period_end") == yesterday
    )  # fmt: skip


# -- bulk import -----------------------------------------------------------------------------


def test_bulk_import_is_idempotent_and_reports_bad_lines_without_echoing_them(
    platform: Platform, http: httpx.Client
) -> None:
    base, writer = platform.url("masterdata"), system(platform, REGISTRY)
    ids = [new_patient_id() for _ in range(20)]
    marker = f"Hemmelig{uuid.uuid4().hex[:8]}"
    lines: list[Any] = [person(i, municipality="4204") for i in ids]
    lines.insert(3, person("17858000077", given_name=marker))  # control digit wrong
    lines.insert(7, b'{"national_id": "' + marker.encode() + b'"')  # not JSON
    lines.insert(9, person(ids[0], given_name=marker))  # same person twice in one file
    body = ndjson(lines)

    first = http.post(f"{base}/import/persons", content=body, headers={**writer, **NDJSON})
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["received"], report["created"], report["rejected"]) == (23, 20, 3)
    assert [e["line"] for e in report["errors"]] == [4, 8, 10]
    assert marker not in first.text and "17858000077" not in first.text

    second = http.post(f"{base}/import/persons", content=body, headers={**writer, **NDJSON})
    assert {k: second.json()[k] for k in ("created", "updated", "unchanged", "rejected")} == {
        "created": 0, "updated": 0, "unchanged": 20, "rejected": 3,
    }  # fmt: skip
    assert platform.db("masterdata").persons.count_documents({"_id": {"$in": ids}}) == 20
    assert platform.db("masterdata").persons.find_one({"given_name": marker}) is None

    def projected() -> list[dict[str, Any]]:
        found = list(platform.db("journal").patients.find({"_id": {"$in": ids}}))
        return found if len(found) == 20 else []

    eventually(projected, timeout=40)
    # the second import published nothing: each person's change was applied downstream once
    assert {p["applied_changes"] for p in projected()} == {1}


def test_bulk_import_refuses_bad_requests_and_stores_nothing(
    platform: Platform, http: httpx.Client
) -> None:
    base, national_id = platform.url("masterdata"), new_patient_id()
    body = ndjson([person(national_id)])
    cases = [
        ("persons", {**system(platform, REGISTRY), "content-type": "application/json"}, 415),
        ("persons", {**system(platform, "Patient.read"), **NDJSON}, 403),
        ("persons", NDJSON, 401),
        ("pets", {**system(platform, REGISTRY), **NDJSON}, 422),
    ]
    for kind, headers, status in cases:
        answer = http.post(f"{base}/import/{kind}", content=body, headers=headers)
        assert answer.status_code == status, (kind, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert platform.db("masterdata").persons.find_one({"_id": national_id}) is None


# -- protected address -----------------------------------------------------------------------


def test_a_protected_address_reaches_no_caller_event_or_log_without_the_right(
    platform: Platform, http: httpx.Client
) -> None:
    base, writer = platform.url("masterdata"), system(platform, REGISTRY)
    national_id, hpr = new_patient_id(), str(next(_hpr_serial))
    street = f"Skjultveien {uuid.uuid4().hex[:10]}"
    protected = person(
        national_id,
        family_name=f"Vern{uuid.uuid4().hex[:6]}",
        address={"line": street, "postal_code": "8006", "city": "Bodø"},
        address_protection="strengt_fortrolig",
    )
    gp_relation = relation(national_id, hpr)
    responses = [
        http.put(f"{base}/persons/{national_id}", json=protected, headers=writer),
        http.post(f"{base}/import/persons", content=ndjson([protected]),
                  headers={**writer, **NDJSON}),
        http.put(f"{base}/care-relations/{gp_relation['relation_id']}", json=gp_relation,
                 headers=writer),
    ]  # fmt: skip
    for headers in (writer, practitioner(platform, hpr)):
        responses += [
            http.get(f"{base}/persons/{national_id}", headers=headers),
            http.get(f"{base}/fhir/R4/Patient/{national_id}", headers=headers),
            http.get(f"{base}/persons?identifier={national_id}", headers=headers),
        ]
    responses += [
        http.get(f"{base}/persons?name={protected['family_name']}", headers=writer),
        http.get(f"{base}/persons?municipality=4601&_count=500", headers=writer),
    ]
    for response in responses:
        assert response.is_success, response.text
        assert street not in response.text, response.request.url
    assert responses[3].json()["address"] is None
    assert responses[3].json()["address_protection"] == "strengt_fortrolig"

    # those with the right see it: the proof that the searches above could find it
    own = http.get(f"{base}/persons/{national_id}", headers=citizen(platform, national_id))
    assert own.json()["address"]["line"] == street
    register = system(platform, "Patient.read Patient.address")
    assert street in http.get(f"{base}/fhir/R4/Patient/{national_id}", headers=register).text

    # events: what the journal's projection holds and what the Redis stream carries
    projected = eventually(
        lambda: platform.db("journal").patients.find_one({"_id": national_id}), timeout=30
    )
    assert projected["address_protection"] == "strengt_fortrolig"
    assert street not in json.dumps(projected, default=str)
    eventually(lambda: national_id in platform.stream("masterdata.person.changed"))
    for topic in ("masterdata.person.changed", "masterdata.care_relation.changed"):
        assert street not in platform.stream(topic)
    # every log line of every process of the stack
    log_files = list((platform.stack.run_dir / "logs").glob("*"))
    assert log_files
    for log_file in log_files:
        assert street not in log_file.read_text(errors="replace"), log_file.name
