"""Nothing a caller sends can crash a service or stop the audit log (issue 13), on the real stack.

- the input guard answers 400 (problem+json / OperationOutcome) to hostile text in paths,
  queries, headers, forms and JSON, to 10,000-deep JSON and to 25-field forms, in every
  service, and takes no access decision for such a request;
- a decision-log entry PostgreSQL cannot store (``\\u0000`` in jsonb, a lone surrogate, a number
  beyond 64 bits...) posted to audit's intake as OPA would is quarantined — chained escaped
  and flagged, kept as received, alerted, shown as a gap and in ``/audit/quarantine`` — while
  the upload succeeds and an ordinary read right after is in the chain within 10 s;
- a poison event published through a real sidecar goes to the dead letters and the event
  behind it is processed.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.conftest import Platform, eventually
from tests.integration.test_audit import auditor, read_documents
from tests.support import API_SERVICES, new_patient_id

pytestmark = pytest.mark.integration

# what the guard refuses, and what the stores downstream could not keep (headers: the HTTP
# client refuses to send control characters; the guard's unit tests cover them)
HOSTILE = {
    "nul": "a\x00b",
    "c0": "a\x01b",
    "escape": "\x1b[31m",
    "del": "a\x7fb",
    "lone_surrogate": "\ud800",
    "noncharacter": "\ufffe",
}


def encoded(text: str) -> str:
    """Percent-encoded as a browser would (a lone surrogate as its 3 bytes: not UTF-8)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def assert_refused(answer: httpx.Response, fhir: bool = False) -> None:
    assert answer.status_code == 400, (answer.status_code, answer.text)
    if fhir:
        assert answer.headers["content-type"].startswith("application/fhir+json")
        assert answer.json()["resourceType"] == "OperationOutcome"
    else:
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert "akson-decision-id" not in answer.headers, "no decision for a refused request"


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_every_service_refuses_hostile_text_in_path_query_and_json(
    platform: Platform, http: httpx.Client, kind: str
) -> None:
    text = HOSTILE[kind]
    body = ('{"note": "' + json.dumps(text)[1:-1] + '"}').encode()
    for service in API_SERVICES:
        base = platform.url(service)
        assert_refused(http.get(f"{base}/things/x{encoded(text)}y"))
        assert_refused(http.get(f"{base}/things?q={encoded(text)}"))
        assert_refused(
            http.post(f"{base}/things", content=body, headers={"content-type": "application/json"})
        )


def test_a_search_whose_decision_would_carry_a_nul_is_refused_at_the_edge(
    platform: Platform, http: httpx.Client
) -> None:
    patient = new_patient_id()
    token = platform.client_token("journal", "DocumentReference.read")
    for text in HOSTILE.values():
        answer = http.get(
            f"{platform.url('journal')}/fhir/R4/DocumentReference"
            f"?patient={patient}&category={encoded(text)}",
            headers={"authorization": f"Bearer {token}"},
        )
        assert_refused(answer, fhir=True)
        assert answer.json()["issue"][0]["expression"] == ["query.category"]


def test_deep_json_huge_numbers_and_long_forms_are_400_not_500(
    platform: Platform, http: httpx.Client
) -> None:
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    for service in API_SERVICES:
        for body in (deep, b'{"n": ' + b"9" * 5000 + b"}", b'{"n": 1e999}', b"[NaN]"):
            assert_refused(
                http.post(
                    f"{platform.url(service)}/things",
                    content=body,
                    headers={"content-type": "application/json"},
                )
            )
    form = "&".join(f"field{i}=value" for i in range(25))
    answer = http.post(
        platform.endpoints["identity"]["token_endpoint"],
        content=form,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_refused(answer)


# -- the decision log: poison entries are quarantined, the log goes on -------------------------


def poisoned_entry(patient: str, category: Any) -> dict[str, Any]:
    return {
        "decision_id": str(uuid.uuid4()),
        "timestamp": "2026-12-01T10:00:00.123456789Z",
        "path": "akson/authz/decision",
        "labels": {"app": "akson-authz", "environment": "test"},
        "input": {
            "subject": {"id": "hpr:9144977", "kind": "practitioner", "hpr_number": "9144977"},
            "action": "search",
            "resource": {"type": "DocumentReference", "patient": patient, "category": category},
            "context": {"care_relations": [], "purpose": "treatment"},
        },
        "result": {"allow": True, "reasons": ["care_relation"], "obligations": []},
    }


def upload_raw(http: httpx.Client, platform: Platform, text: str) -> httpx.Response:
    # json.dumps writes a lone surrogate as the escape "\ud800", exactly as OPA's Go encoder
    # writes invalid text: the intake sees it after parsing
    return http.post(
        f"{platform.url('audit')}/opa/decision-logs",
        content=gzip.compress(text.encode()),
        headers={
            "content-encoding": "gzip",
            "content-type": "application/json",
            "authorization": f"Bearer {platform.tokens['audit_upload_token']}",
        },
    )


def test_a_poisoned_decision_is_quarantined_and_the_next_ordinary_one_is_chained(
    platform: Platform, http: httpx.Client
) -> None:
    patient, hpr = new_patient_id(), "9144978"
    poisoned = {kind: poisoned_entry(patient, text) for kind, text in HOSTILE.items()}
    poisoned["huge_number"] = poisoned_entry(patient, 2**70)
    good = poisoned_entry(patient, "general")
    batch = [*poisoned.values(), good]
    answer = upload_raw(http, platform, json.dumps(batch))
    assert answer.status_code == 204, answer.text
    # OPA re-sends a batch it is unsure of: still 2xx, nothing twice
    assert upload_raw(http, platform, json.dumps(batch)).status_code == 204

    # an ordinary read right after: its decision reaches the chain within 10 s of the read
    (read_id,) = read_documents(http, platform, patient, hpr, reads=1)
    audit = platform.db("audit")
    eventually(lambda: audit.decisions.find_one({"_id": read_id}), timeout=10)

    headers = auditor(platform)
    ids = {kind: entry["decision_id"] for kind, entry in poisoned.items()}
    # chained, flagged, escaped: the auditors' view shows each as quarantined
    for kind, decision_id in ids.items():
        shown = http.get(f"{platform.url('audit')}/audit/decisions/{decision_id}", headers=headers)
        assert shown.status_code == 200, (kind, shown.text)
        assert shown.json()["quarantined"] is True, kind
        assert shown.json()["patient"] == patient
    ordinary = http.get(
        f"{platform.url('audit')}/audit/decisions/{good['decision_id']}", headers=headers
    )
    assert ordinary.status_code == 200 and ordinary.json()["quarantined"] is False
    assert audit.decisions.count_documents({"_id": {"$in": list(ids.values())}}) == len(ids)

    # kept as received, with the reason (a location, not the value)
    listed = http.get(
        f"{platform.url('audit')}/audit/quarantine", params={"_count": 1000}, headers=headers
    )
    assert listed.status_code == 200, listed.text
    kept = {item["decision_id"]: item for item in listed.json()["items"]}
    for kind, decision_id in ids.items():
        item = kept[decision_id]
        assert item["reason"] == "entry.input.resource.category", kind
        original = json.loads(base64.b64decode(item["entry_json_base64"]))
        expected = 2**70 if kind == "huge_number" else HOSTILE[kind]
        assert original["input"]["resource"]["category"] == expected, kind
    # a gap record each, and an alert each through the outbox
    gaps = http.get(f"{platform.url('audit')}/audit/gaps", headers=headers, params={"_count": 1000})
    assert gaps.status_code == 200, gaps.text
    sides = {g["decision_id"]: g["side"] for g in gaps.json()["items"]}
    assert all(sides.get(i) == "quarantined" for i in ids.values())

    def alerted() -> set[str]:
        return {e["data"]["decision_id"] for e in platform.events("audit.alert.quarantined")}

    eventually(lambda: set(ids.values()) <= alerted(), timeout=15)
    # nobody is denied by the poison: the chain verifies
    verified = http.get(f"{platform.url('audit')}/audit/chain/verify", headers=headers)
    assert verified.status_code == 200, verified.text
    assert verified.json()["intact"] is True, verified.json()


def test_an_upload_with_a_hostile_decision_id_moves_on(
    platform: Platform, http: httpx.Client
) -> None:
    entry = poisoned_entry(new_patient_id(), "general")
    entry["decision_id"] = "bad\x00id"
    assert upload_raw(http, platform, json.dumps([entry])).status_code == 204
    listed = http.get(
        f"{platform.url('audit')}/audit/quarantine",
        params={"_count": 1000},
        headers=auditor(platform),
    ).json()["items"]
    assert any(i["reason"] == "entry.decision_id" for i in listed)


# -- subscriptions: a poison event is dead-lettered, the one behind it processed ---------------


def publish_person(http: httpx.Client, platform: Platform, national_id: str) -> str:
    event_id = str(uuid.uuid4())
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": "akson/masterdata",
        "type": "masterdata.person.changed.v1",
        "subject": "person",
        "datacontenttype": "application/json",
        "data": {
            "national_id": national_id,
            "municipality": "4601",
            "address_protection": "none",
            "deceased": False,
        },
    }
    answer = http.post(
        f"{platform.endpoints['services']['masterdata']['dapr_http']}"
        "/v1.0/publish/pubsub/masterdata.person.changed",
        content=json.dumps(envelope).encode(),
        headers={
            "content-type": "application/cloudevents+json",
            "dapr-api-token": platform.tokens["dapr_api_token"],
        },
    )
    assert answer.status_code == 204, answer.text
    return event_id


def test_a_poison_event_is_dead_lettered_and_the_next_one_is_processed(
    platform: Platform, http: httpx.Client
) -> None:
    poison = publish_person(http, platform, "1234\x00")
    good_person = new_patient_id()
    publish_person(http, platform, good_person)
    identity = platform.db("identity")
    eventually(lambda: identity.persons.find_one({"_id": good_person}), timeout=15)

    def dead_lettered() -> bool:
        return any(
            e.get("id") == poison for e in platform.events("masterdata.person.changed.deadletter")
        )

    eventually(dead_lettered, timeout=15)
    eventually(lambda: identity.dead_letters.find_one({"event_id": poison}), timeout=5)


# -- the property: hostile values through every string parameter and field of every route -----

MARK = "HOSTILEMARK"
STORED_IF_NOT_REFUSED = {
    "nul": f"{MARK}\x00",
    "c0": f"{MARK}\x02x",
    "del": f"{MARK}\x7f",
    "lone_surrogate": f"{MARK}\udc80",
    "noncharacter": f"{MARK}\U0001ffff",
}
# no 5xx for these either (they may be refused as invalid, or stored: they are valid text)
ODD = {"long": "L" * 100_000, "huge_number": "9" * 5000, "float_overflow": "1e400"}
# (text for a path or query, JSON literal for a body field)
VALUES: list[tuple[str, str]] = [
    *((text, json.dumps(text)) for text in STORED_IF_NOT_REFUSED.values()),
    (ODD["long"], json.dumps(ODD["long"])),
    (ODD["huge_number"], ODD["huge_number"]),
    (ODD["float_overflow"], ODD["float_overflow"]),
]


def _resolve(schema: Any, components: dict[str, Any]) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema if isinstance(schema, dict) else {}


def _is_text(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    schema = _resolve(schema, components)
    options = [schema, *(_resolve(s, components) for s in schema.get("anyOf", []))]
    return any(o.get("type") == "string" for o in options)


def targets(document: dict[str, Any]) -> list[tuple[str, str, str, str, str | None]]:
    """(method, path, location, name, body media type) for every string parameter and every
    string field of a JSON body (``"*"``: the body as a whole, for deep JSON)."""
    components = document.get("components", {}).get("schemas", {})
    found: list[tuple[str, str, str, str, str | None]] = []
    for path, operations in document["paths"].items():
        if path.startswith("/events/"):
            continue
        for method, operation in operations.items():
            for parameter in operation.get("parameters") or []:
                if parameter["in"] in ("path", "query") and _is_text(
                    parameter.get("schema", {}), components
                ):
                    found.append((method, path, parameter["in"], parameter["name"], None))
            content = (operation.get("requestBody") or {}).get("content") or {}
            media = next((m for m in content if "json" in m), None)
            if media is None:
                continue
            schema = _resolve(content[media].get("schema", {}), components)
            found.append((method, path, "body", "*", media))
            for name in schema.get("properties") or {}:
                found.append((method, path, "body", name, media))
    return found


def hostile_request(
    http: httpx.Client,
    base: str,
    target: tuple[str, str, str, str, str | None],
    value: tuple[str, str],
    headers: dict[str, str],
) -> httpx.Response:
    method, path, location, name, media = target
    text, literal = value
    url_path = path
    if location != "body":
        text = text[:8000]  # a longer request line is the HTTP server's to refuse (431)
    for parameter in [p.split("}")[0] for p in path.split("{")[1:]]:
        filled = encoded(text) if (location, name) == ("path", parameter) else "x1"
        url_path = url_path.replace("{" + parameter + "}", filled)
    query = f"?{name}={encoded(text)}" if location == "query" else ""
    body: bytes | None = None
    request_headers = dict(headers)
    if media is not None:
        request_headers["content-type"] = media
        if name == "*":
            body = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
        else:
            body = (
                '{"' + name + '": ' + literal + ', "' + json.dumps(text)[1:-1] + '": 1}'
            ).encode()
    return http.request(
        method.upper(), f"{base}{url_path}{query}", content=body, headers=request_headers
    )


def test_hostile_values_through_every_parameter_and_field_give_no_5xx_and_store_nothing(
    platform: Platform,
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from stack import TEST_CLIENT_SCOPES

    plan: list[tuple[str, tuple[str, str, str, str, str | None]]] = []
    auth: dict[str, dict[str, str]] = {}
    with httpx.Client(timeout=30.0) as http:
        for service in API_SERVICES:
            document = http.get(f"{platform.url(service)}/openapi.json").json()
            plan.extend((service, target) for target in targets(document))
            token = (
                platform.token("audit", subject="aud", kind="system", client="auditor", scope="")
                if service == "audit"
                else platform.client_token(service, " ".join(TEST_CLIENT_SCOPES))
            )
            auth[service] = {"authorization": f"Bearer {token}"}
        assert len(plan) > 50
        values = VALUES
        errors: list[str] = []

        # every target once with every value is the floor; hypothesis adds random pairings
        for service, target in plan:
            for value in values:
                answer = hostile_request(http, platform.url(service), target, value, auth[service])
                if answer.status_code >= 500:
                    errors.append(
                        f"{service} {target} {type(value).__name__}: {answer.status_code}"
                    )

        @settings(
            max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(st.sampled_from(plan), st.sampled_from(values))
        def property_holds(step: tuple[str, Any], value: tuple[str, str]) -> None:
            service, target = step
            answer = hostile_request(http, platform.url(service), target, value, auth[service])
            assert answer.status_code < 500, (service, target, answer.status_code)

        property_holds()
        assert not errors, "\n".join(errors)

    # nothing hostile was stored anywhere (every collection of every service's database)
    stored = []
    for service in API_SERVICES:
        database = platform.db(service)
        for collection in database.list_collection_names():
            for document in database[collection].find({}):
                text = repr(document)
                if MARK in text:
                    stored.append(f"{service}.{collection}")
                    break
    assert not stored, stored
