"""The platform's one FHIR base (issue 17) driven by a real FHIR client (fhirpy) against the
running stack: one CapabilityStatement listing every type, CRUD, search and paging to the end
through the one base, while each owning service still asks the policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from tests.integration.conftest import Platform, eventually
from tests.integration.test_consent import block
from tests.integration.test_foundation import document_reference, gp_headers, put_person
from tests.integration.test_journal import lab_report
from tests.support import new_patient_id

pytestmark = pytest.mark.integration

FHIR = "application/fhir+json"
GATEWAY = "gateway"
ORG = "974760673"
_hpr = iter(range(9170000, 9179999))


@dataclass
class Case:
    patient: str
    hpr: str
    token: str  # the treating GP's, for the gateway
    base: str

    def client(self, **headers: str) -> SyncFHIRClient:
        return SyncFHIRClient(
            self.base, authorization=f"Bearer {self.token}", extra_headers=headers or None
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def case(platform: Platform) -> Iterator[Case]:
    patient, hpr = new_patient_id(), str(next(_hpr))
    with httpx.Client(timeout=20.0) as http:
        assert put_person(http, platform, patient).status_code == 200
    platform.relate(patient, hpr=hpr)
    eventually(lambda: platform.db("consent").care_relations.find_one({"patient": patient}))
    token = gp_headers(platform, hpr, audience=GATEWAY)["authorization"].removeprefix("Bearer ")
    yield Case(patient, hpr, token, platform.endpoints["fhir"]["base"])


def observation(patient: str, value: float = 6.1) -> dict[str, Any]:
    resource, _ = lab_report(patient)
    resource["valueQuantity"] = {"value": value, "unit": "%"}
    return resource


# -- the one base ------------------------------------------------------------------------------


def test_the_base_is_in_the_endpoints_and_serves_one_capability_statement_of_every_type(
    platform: Platform, case: Case
) -> None:
    assert case.base == f"{platform.url(GATEWAY)}/fhir/R4"
    statement = SyncFHIRClient(case.base).execute("metadata", method="get")
    CapabilityStatement.model_validate(statement)  # validates as R4(B)
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["implementation"]["url"] == case.base
    listed = [r["type"] for r in statement["rest"][0]["resource"]]
    assert len(listed) == len(set(listed)), "a type listed twice"
    # every type every owner serves, asked of the owners themselves
    owned: set[str] = set()
    with httpx.Client(timeout=10.0) as http:
        for owner in ("masterdata", "consent", "journal", "messaging"):
            own = http.get(f"{platform.url(owner)}/fhir/R4/metadata").json()
            CapabilityStatement.model_validate(own)
            owned |= {r["type"] for r in own["rest"][0]["resource"]}
    assert set(listed) == owned
    assert owned >= {"Patient", "Practitioner", "Organization", "Consent", "Observation"}


def test_a_fhir_client_creates_reads_updates_and_deletes_through_the_one_base(
    case: Case,
) -> None:
    client = case.client()
    created = client.resource("Observation", **observation(case.patient)).save()
    assert created["id"] and created["meta"]["versionId"] == "1"
    read = client.reference("Observation", created["id"]).to_resource()
    assert read["valueQuantity"]["value"] == 6.1

    # a versioned update names the version it replaces (the journal requires If-Match)
    changed = {**observation(case.patient, 6.4), "id": created["id"]}
    updated = case.client(**{"If-Match": 'W/"1"'}).resource("Observation", **changed).save()
    assert updated["meta"]["versionId"] == "2"
    assert client.reference("Observation", created["id"]).to_resource()["valueQuantity"] == {
        "value": 6.4,
        "unit": "%",
    }

    # the journal deletes nothing: DELETE records entered-in-error
    client.delete("Observation", created["id"])
    gone = client.reference("Observation", created["id"]).to_resource()
    assert gone["status"] == "entered-in-error"
    found = client.resources("Observation").search(patient=case.patient).fetch_all()
    assert created["id"] not in {o["id"] for o in found}


def test_types_of_every_owner_are_read_through_the_one_base(case: Case) -> None:
    client = case.client()
    patient = client.reference("Patient", case.patient).to_resource()  # master data
    assert patient["identifier"][0]["value"] == case.patient
    assert client.reference("Organization", ORG).to_resource()["id"] == ORG
    assert client.reference("Practitioner", case.hpr).to_resource()["id"] == case.hpr
    roles = client.resources("PractitionerRole").search(practitioner=case.hpr).fetch_all()
    assert all(r["practitioner"]["reference"] == f"Practitioner/{case.hpr}" for r in roles)


def registered_block(platform: Platform, patient: str) -> str:
    """A block registered by the citizen at consent's own API; its id."""
    citizen = platform.token("consent", subject=patient, kind="citizen")
    with httpx.Client(timeout=10.0) as http:
        answer = http.post(
            f"{platform.url('consent')}/directives",
            json=block(patient),
            headers={"authorization": f"Bearer {citizen}"},
        )
    assert answer.status_code == 201, answer.text
    return str(answer.headers["location"].rstrip("/").rsplit("/", 1)[-1])


def test_a_consent_search_goes_to_consent_and_its_urls_to_the_one_base(
    platform: Platform, case: Case
) -> None:
    directive = registered_block(platform, case.patient)
    bundle = case.client().resources("Consent").search(patient=case.patient).fetch_raw()
    assert directive in {e["resource"]["id"] for e in bundle["entry"]}
    assert all(e["fullUrl"].startswith(f"{case.base}/Consent/") for e in bundle["entry"])


def test_search_pages_to_the_end_through_the_one_base(case: Case) -> None:
    client = case.client()
    ids = set()
    for value in range(5):
        ids.add(client.resource("Observation", **observation(case.patient, value)).save()["id"])
    search = client.resources("Observation").search(patient=case.patient).limit(2)
    first = search.fetch_raw()
    next_links = [link["url"] for link in first["link"] if link["relation"] == "next"]
    assert next_links and next_links[0].startswith(f"{case.base}/Observation?")
    every = search.fetch_all()  # follows each next link to the last page
    assert ids <= {o["id"] for o in every}
    assert len(every) == len({o["id"] for o in every}), "a resource on two pages"


# -- the policy still holds, at the owner ---------------------------------------------------------


def test_the_owner_decides_a_caller_without_a_relation_sees_nothing(
    platform: Platform, case: Case
) -> None:
    created = case.client().resource("Observation", **observation(case.patient)).save()
    stranger = gp_headers(platform, str(next(_hpr)), unit="unit-x", audience=GATEWAY)
    client = SyncFHIRClient(case.base, authorization=stranger["authorization"])
    with pytest.raises(ResourceNotFound):
        client.reference("Observation", created["id"]).to_resource()
    with httpx.Client(timeout=10.0) as http:
        answer = http.get(f"{case.base}/Observation/{created['id']}", headers=stranger)
    assert answer.status_code == 404
    assert "akson-decision-id" in answer.headers  # the journal asked the policy


def test_a_gateway_token_is_good_at_the_owners_fhir_routes_only(
    platform: Platform, case: Case
) -> None:
    with httpx.Client(timeout=10.0) as http:
        fhir_route = http.get(
            f"{platform.url('masterdata')}/fhir/R4/Patient/{case.patient}", headers=case.headers
        )
        other_route = http.get(
            f"{platform.url('masterdata')}/persons/{case.patient}", headers=case.headers
        )
        # a token for another service is refused at the owner, whatever the gateway forwards
        journal_token = gp_headers(platform, case.hpr, audience="journal")
        wrong = http.get(f"{case.base}/Patient/{case.patient}", headers=journal_token)
    assert fhir_route.status_code == 200, fhir_route.text
    assert other_route.status_code == 401
    assert wrong.status_code == 401
    assert wrong.json()["resourceType"] == "OperationOutcome"


def test_an_unknown_type_and_a_bad_path_are_operation_outcomes(case: Case) -> None:
    with httpx.Client(timeout=10.0) as http:
        unknown = http.get(f"{case.base}/Spaceship/1", headers=case.headers)
        lower = http.get(f"{case.base}/observation", headers=case.headers)
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    assert lower.status_code in (400, 404)
    assert json.loads(lower.text)["resourceType"] == "OperationOutcome"


# -- REST by the specification, through the one base -------------------------------------------


def created_observation(case: Case, **headers: str) -> httpx.Response:
    with httpx.Client(timeout=10.0) as http:
        return http.post(
            f"{case.base}/Observation",
            content=json.dumps(observation(case.patient)),
            headers={**case.headers, "content-type": FHIR, **headers},
        )


def test_search_by_post_is_the_same_search_as_by_get(case: Case) -> None:
    case.client().resource("Observation", **observation(case.patient)).save()
    with httpx.Client(timeout=10.0) as http:
        by_get = http.get(
            f"{case.base}/Observation", params={"patient": case.patient}, headers=case.headers
        )
        by_post = http.post(
            f"{case.base}/Observation/_search", data={"patient": case.patient}, headers=case.headers
        )
    assert by_get.status_code == by_post.status_code == 200, by_post.text
    ids = [{e["resource"]["id"] for e in a.json()["entry"]} for a in (by_get, by_post)]
    assert ids[0] == ids[1] and ids[0]


def test_json_is_served_with_its_charset_and_anything_else_is_406(case: Case) -> None:
    url = f"{case.base}/Observation"
    query = {"patient": case.patient}
    with httpx.Client(timeout=10.0) as http:
        as_json = http.get(url, params={**query, "_format": "json"}, headers=case.headers)
        as_xml = http.get(url, params={**query, "_format": "xml"}, headers=case.headers)
        accept_xml = http.get(
            url, params=query, headers={**case.headers, "accept": "application/fhir+xml"}
        )
        turtle = http.get(f"{case.base}/metadata", headers={"accept": "text/turtle"})
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"] == "application/fhir+json; charset=utf-8"
    for refused in (as_xml, accept_xml, turtle):
        assert refused.status_code == 406, refused.text
        assert refused.json()["resourceType"] == "OperationOutcome"


def test_counts_and_totals_count_only_what_the_caller_may_see(
    platform: Platform, case: Case
) -> None:
    for _ in range(2):
        case.client().resource("Observation", **observation(case.patient)).save()
    visible = len(case.client().resources("Observation").search(patient=case.patient).fetch_all())
    # fhirpy's count() asks _count=0 (and its own _totalMethod, ignored when lenient)
    lenient = case.client(Prefer="handling=lenient")
    assert lenient.resources("Observation").search(patient=case.patient).count() == visible
    with httpx.Client(timeout=10.0) as http:
        summary = http.get(
            f"{case.base}/Observation",
            params={"patient": case.patient, "_summary": "count"},
            headers=case.headers,
        ).json()
        strict = http.get(
            f"{case.base}/Observation",
            params={"patient": case.patient, "_totalMethod": "count"},
            headers=case.headers,
        )
        stranger = gp_headers(platform, str(next(_hpr)), unit="unit-x", audience=GATEWAY)
        theirs = http.get(
            f"{case.base}/Observation",
            params={"patient": case.patient, "_summary": "count"},
            headers=stranger,
        )
    assert summary["total"] == visible >= 2 and "entry" not in summary
    assert strict.status_code == 400  # strict (the default): an unknown parameter is refused
    # a caller who may see none of them counts none (or is refused the search outright)
    assert theirs.status_code == 403 or theirs.json()["total"] == 0


def test_location_names_the_version_and_prefer_return_shapes_the_answer(case: Case) -> None:
    full = created_observation(case)
    minimal = created_observation(case, prefer="return=minimal")
    outcome = created_observation(case, prefer="return=OperationOutcome")
    assert full.status_code == minimal.status_code == outcome.status_code == 201
    resource = full.json()
    assert full.headers["location"] == f"{case.base}/Observation/{resource['id']}/_history/1"
    assert minimal.content == b"" and "/_history/1" in minimal.headers["location"]
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_a_conditional_create_twice_makes_one_resource(case: Case) -> None:
    identifier = {"system": "urn:akson:test-lab", "value": f"order-{next(_hpr)}"}
    condition = f"patient={case.patient}&identifier={identifier['system']}|{identifier['value']}"
    client = case.client(**{"If-None-Exist": condition})
    resource = {**observation(case.patient), "identifier": [identifier]}
    first = client.resource("Observation", **resource).save()
    second = client.resource("Observation", **resource).save()
    assert first["id"] == second["id"]
    found = (
        case.client()
        .resources("Observation")
        .search(patient=case.patient, identifier=f"{identifier['system']}|{identifier['value']}")
        .fetch_all()
    )
    assert [o["id"] for o in found] == [first["id"]]


def test_if_none_match_on_a_read_is_304_when_unchanged(case: Case) -> None:
    created = created_observation(case).json()
    url = f"{case.base}/Observation/{created['id']}"
    with httpx.Client(timeout=10.0) as http:
        same = http.get(url, headers={**case.headers, "if-none-match": 'W/"1"'})
        other = http.get(url, headers={**case.headers, "if-none-match": 'W/"7"'})
    assert same.status_code == 304 and same.content == b""
    assert other.status_code == 200 and other.json()["id"] == created["id"]


def test_id_subject_elements_and_last_updated(case: Case) -> None:
    created = case.client().resource("Observation", **observation(case.patient)).save()
    search = case.client().resources("Observation")
    by_id = search.search(subject=f"Patient/{case.patient}", _id=created["id"]).fetch_all()
    assert [o["id"] for o in by_id] == [created["id"]]
    subset = search.search(_id=created["id"], patient=case.patient).elements("status").fetch_raw()
    resource = subset["entry"][0]["resource"]
    assert "valueQuantity" not in resource and resource["status"] == "final"
    assert any(t.get("code") == "SUBSETTED" for t in resource["meta"]["tag"])
    later = search.search(patient=case.patient, _lastUpdated="gt2999-01-01").fetch_all()
    assert later == []


# -- batch and transaction ---------------------------------------------------------------------


def entry(method: str, url: str, resource: dict[str, Any] | None = None, **extra: Any) -> Any:
    item: dict[str, Any] = {"request": {"method": method, "url": url, **extra.pop("request", {})}}
    if resource is not None:
        item["resource"] = resource
    return {**item, **extra}


def bundle(kind: str, *entries: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def tagged(case: Case, value: float = 6.1) -> tuple[dict[str, Any], str]:
    """An Observation with an identifier of its own (to look for it afterwards)."""
    identifier = {"system": "urn:akson:test-lab", "value": f"tx-{next(_hpr)}"}
    return {**observation(case.patient, value), "identifier": [identifier]}, (
        f"{identifier['system']}|{identifier['value']}"
    )


def kept(case: Case, identifier: str) -> list[Any]:
    search = case.client().resources("Observation")
    return list(search.search(patient=case.patient, identifier=identifier).fetch_all())


def test_a_batch_routes_each_entry_and_gives_each_its_own_status(case: Case) -> None:
    existing = case.client().resource("Observation", **observation(case.patient)).save()
    new, identifier = tagged(case)
    stranger_patient = new_patient_id()
    answer = case.client().execute(
        case.base,
        method="post",
        data=bundle(
            "batch",
            entry("POST", "Observation", new),
            entry("GET", f"Observation/{existing['id']}"),
            entry("GET", f"Patient/{case.patient}"),
            entry("GET", "Observation/no-such-observation"),
            entry("POST", "Observation", observation(stranger_patient)),
            entry("GET", f"Observation?patient={case.patient}&_count=1"),
        ),
    )
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in answer["entry"]]
    assert statuses[:4] == ["201", "200", "200", "404"]
    assert statuses[4] in ("403", "404")  # the journal's policy: no relation to that patient
    assert statuses[5] == "200"
    assert answer["entry"][1]["resource"]["id"] == existing["id"]
    assert answer["entry"][2]["resource"]["resourceType"] == "Patient"  # from master data
    assert answer["entry"][0]["response"]["location"].endswith("/_history/1")
    assert answer["entry"][3]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert len(kept(case, identifier)) == 1


def test_a_transaction_applies_every_entry_and_resolves_its_references(case: Case) -> None:
    first, identifier = tagged(case)
    second, _ = tagged(case, 7.0)
    second["hasMember"] = [{"reference": "urn:uuid:9b0f3c1e-0000-4000-8000-000000000001"}]
    answer = case.client().execute(
        case.base,
        method="post",
        data=bundle(
            "transaction",
            entry(
                "POST",
                "Observation",
                first,
                fullUrl="urn:uuid:9b0f3c1e-0000-4000-8000-000000000001",
            ),
            entry("POST", "Observation", second),
        ),
    )
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 2
    (created,) = kept(case, identifier)
    assert answer["entry"][1]["resource"]["hasMember"] == [
        {"reference": f"Observation/{created['id']}"}
    ]


def test_a_transaction_that_fails_half_way_keeps_nothing(case: Case) -> None:
    """Entry 0 creates, entry 1 updates B, entry 2 updates B from the same version: it fails
    (412) after the others were applied; the create is undone and B restored."""
    b = case.client().resource("Observation", **observation(case.patient, 5.0)).save()
    new, identifier = tagged(case)
    changed = {**observation(case.patient, 7.0), "id": b["id"]}
    again = {**observation(case.patient, 8.0), "id": b["id"]}
    with httpx.Client(timeout=30.0) as http:
        answer = http.post(
            case.base,
            content=json.dumps(
                bundle(
                    "transaction",
                    entry("POST", "Observation", new),
                    entry("PUT", f"Observation/{b['id']}", changed, request={"ifMatch": 'W/"1"'}),
                    entry("PUT", f"Observation/{b['id']}", again, request={"ifMatch": 'W/"1"'}),
                )
            ),
            headers={**case.headers, "content-type": FHIR},
        )
    assert answer.status_code == 412, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "entry 2" in outcome["issue"][0]["diagnostics"]
    assert kept(case, identifier) == []  # the create was undone
    now = case.client().reference("Observation", b["id"]).to_resource()
    assert now["valueQuantity"]["value"] == 5.0  # the update was undone
    assert now["status"] == "final"


def test_a_transaction_with_a_refused_entry_applies_nothing_and_reveals_nothing(
    case: Case,
) -> None:
    new, identifier = tagged(case)
    elsewhere = new_patient_id()
    with httpx.Client(timeout=30.0) as http:
        answer = http.post(
            case.base,
            content=json.dumps(
                bundle(
                    "transaction",
                    entry("POST", "Observation", new),
                    entry("POST", "Observation", observation(elsewhere)),
                )
            ),
            headers={**case.headers, "content-type": FHIR},
        )
    assert answer.status_code in (403, 404), answer.text
    diagnostics = answer.json()["issue"][0]["diagnostics"]
    assert "entry 1" in diagnostics and "entry 0" not in diagnostics
    assert identifier.split("|")[1] not in answer.text and elsewhere not in answer.text
    assert kept(case, identifier) == []  # validated first: nothing was applied


def test_a_malformed_bundle_is_a_400_operation_outcome(case: Case) -> None:
    with httpx.Client(timeout=10.0) as http:
        for document in (
            {"resourceType": "Bundle", "type": "collection"},
            bundle("batch", {"request": {"method": "PATCH", "url": "Observation/1"}}),
            bundle("transaction", entry("PUT", "Observation", observation(case.patient))),
        ):
            answer = http.post(
                case.base,
                content=json.dumps(document),
                headers={**case.headers, "content-type": FHIR},
            )
            assert answer.status_code == 400, answer.text
            assert answer.json()["resourceType"] == "OperationOutcome"


# -- includes and $everything: fetched with the caller's token ---------------------------------


def lab_delivers(platform: Platform, case: Case, resource: dict[str, Any]) -> str:
    """A result delivered by the lab system (which writes but need not read): its id."""
    token = platform.token(
        GATEWAY,
        subject="lab",
        kind="system",
        client="lab",
        scope="DiagnosticReport.write Observation.write",
    )
    with httpx.Client(timeout=10.0) as http:
        answer = http.post(
            f"{case.base}/Observation",
            content=json.dumps(resource),
            headers={"authorization": f"Bearer {token}", "content-type": FHIR},
        )
    assert answer.status_code == 201, answer.text
    location: str = answer.headers["location"]
    return location.split("/Observation/", 1)[1].split("/", 1)[0]


def test_an_include_carries_only_what_the_caller_may_read(platform: Platform, case: Case) -> None:
    client = case.client()
    # a result of another patient, delivered by the lab: the GP has no relation to that patient
    foreign_id = lab_delivers(platform, case, observation(new_patient_id()))
    with httpx.Client(timeout=10.0) as http:
        answer = http.get(f"{case.base}/Observation/{foreign_id}", headers=case.headers)
    assert foreign_id and answer.status_code == 404  # not the GP's to read
    member = client.resource("Observation", **observation(case.patient, 1.0)).save()
    panel = {
        **observation(case.patient, 2.0),
        "hasMember": [
            {"reference": f"Observation/{member['id']}"},
            {"reference": f"Observation/{foreign_id}"},
        ],
    }
    created = client.resource("Observation", **panel).save()
    found = (
        client.resources("Observation")
        .search(patient=case.patient, _id=created["id"])
        .include("Observation", "has-member")
        .include("Observation", "patient")
        .fetch_raw()
    )
    modes = {e["resource"]["id"]: e["search"]["mode"] for e in found["entry"]}
    assert modes == {created["id"]: "match", member["id"]: "include", case.patient: "include"}
    assert found["total"] == 1
    # (the panel names the foreign result: only the reference, never the resource)
    assert foreign_id not in {e["resource"]["id"] for e in found["entry"]}


def test_a_revinclude_and_everything_gather_from_every_owner_as_the_caller(
    platform: Platform, case: Case
) -> None:
    created = case.client().resource("Observation", **observation(case.patient)).save()
    directive = registered_block(platform, case.patient)
    found = (
        case.client()
        .resources("Patient")
        .search(_id=case.patient)
        .revinclude("Observation", "patient")
        .revinclude("Consent", "patient")
        .fetch_raw()
    )
    ids = {e["resource"]["id"]: e["search"]["mode"] for e in found["entry"]}
    assert ids[case.patient] == "match"
    assert ids[created["id"]] == ids[directive] == "include"

    everything = case.client().execute(f"Patient/{case.patient}/$everything", method="get")
    kinds = {e["resource"]["resourceType"] for e in everything["entry"]}
    assert {"Patient", "Observation", "Consent"} <= kinds
    assert created["id"] in {e["resource"]["id"] for e in everything["entry"]}
    # a practitioner without a relation gets nothing of it
    stranger = gp_headers(platform, str(next(_hpr)), unit="unit-x", audience=GATEWAY)
    with httpx.Client(timeout=30.0) as http:
        theirs = http.get(f"{case.base}/Patient/{case.patient}/$everything", headers=stranger)
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["total"] == 0 and case.patient not in theirs.text


def test_a_conditional_update_creates_once_then_updates_the_match(case: Case) -> None:
    resource, identifier = tagged(case, 3.0)
    query = {"patient": case.patient, "identifier": identifier}
    with httpx.Client(timeout=10.0) as http:
        created = http.put(
            f"{case.base}/Observation",
            params=query,
            content=json.dumps(resource),
            headers={**case.headers, "content-type": FHIR},
        )
        changed = {**resource, "valueQuantity": {"value": 4.0, "unit": "%"}}
        updated = http.put(
            f"{case.base}/Observation",
            params=query,
            content=json.dumps(changed),
            headers={**case.headers, "content-type": FHIR},
        )
    assert created.status_code == 201, created.text
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    (only,) = kept(case, identifier)
    assert only["valueQuantity"]["value"] == 4.0


def test_the_journals_summary_operation_is_reached_through_the_patient_of_master_data(
    case: Case,
) -> None:
    note = case.client().resource("DocumentReference", **document_reference(case.patient)).save()
    summary = case.client().execute(f"Patient/{case.patient}/$summary", method="get")
    assert summary["resourceType"] == "Bundle" and summary["type"] == "collection"
    assert note["id"] in {e["resource"]["id"] for e in summary["entry"]}
    assert all(e["fullUrl"].startswith(case.base) for e in summary["entry"])


def test_an_unknown_parameter_is_refused_by_every_owner_unless_lenient(case: Case) -> None:
    with httpx.Client(timeout=10.0) as http:
        answers = {
            (resource_type, handling): http.get(
                f"{case.base}/{resource_type}",
                params={"patient": case.patient, "nme": "x"},
                headers={**case.headers, "prefer": f"handling={handling}"},
            ).status_code
            for resource_type in ("Consent", "Observation")  # consent's and the journal's
            for handling in ("strict", "lenient")
        }
        patient = http.get(
            f"{case.base}/Patient", params={"_id": case.patient, "nme": "x"}, headers=case.headers
        )
    assert answers == {
        ("Consent", "strict"): 400,
        ("Consent", "lenient"): 200,
        ("Observation", "strict"): 400,
        ("Observation", "lenient"): 200,
    }
    assert patient.status_code == 400  # master data's
