"""The access matrix over every route of every service (issue 14), against the running stack.

The routes come from each running service's ``/openapi.json``; the expected outcome of every
(service, method, path) for every subject kind is stated below in :data:`TABLE` (who passes the
policy; everyone else is refused). A route found in OpenAPI without a row fails the test, and
so does a row whose route no longer exists. One request per cell, the fixtures prepared once.

An answer *passes* when it is 2xx (or 409/412: the policy let the caller through to a state
check), and, for a route that answers 200 whatever it may show (a search, a list, a summary),
when the fixture record the row names is in it. It is *refused* when it is 401/403, a 404 for a
record that exists (a refusal that reads like an unknown id), or a passing status without the
named record (filtered out). Anything else is unexpected (a 4xx for bad input, a 5xx) and fails.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stack
from stack import TEST_CLIENT_SCOPES

from tests.integration.conftest import Platform, eventually
from tests.integration.test_consent import REASON, block
from tests.integration.test_foundation import document_reference, gp_headers, person
from tests.integration.test_journal import lab_report, visit
from tests.integration.test_messaging import (
    deliver_inbound,
    inbound_bundle,
    new_her_id,
    with_gp,
)
from tests.support import as_organisation_number, new_patient_id

pytestmark = pytest.mark.integration

FHIR = "application/fhir+json"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
SECRET_URL = "https://akson.no/fhir/StructureDefinition/subscription-signing-secret"
LAB_SCOPES = "DiagnosticReport.write Observation.write"
ALL_SCOPES = " ".join(TEST_CLIENT_SCOPES)
RUN = uuid.uuid4().int
TREATING_HPR = str(9_700_000 + RUN % 100_000)
STRANGER_HPR = str(9_800_000 + RUN % 100_000)
ER_HPR = str(9_900_000 + RUN % 100_000)
DUMMY_HPR = str(9_600_000 + RUN % 100_000)
GP_UNIT = "unit-gp-1"  # gp_headers' organisation 974760673, unit "unit-gp-1"

SUBJECTS = (
    "anonymous",
    "wrong_audience",
    "stranger",
    "treating",
    "citizen",
    "other_citizen",
    "lab",
    "nav",
    "auditor",
    "all_scopes",
)
EVERYONE = frozenset(SUBJECTS)
NOBODY: frozenset[str] = frozenset()


def only(*names: str) -> frozenset[str]:
    unknown = set(names) - EVERYONE
    assert not unknown, unknown
    return frozenset(names)


# -- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    """The fixture records (ids) and every subject's token per audience."""

    patient: str
    other_patient: str
    dummy_patient: str
    document: str = ""
    lab_observation: str = ""  # recorded by the lab: the lab may correct it
    gp_observation: str = ""  # recorded by the GP: the lab may not invalidate it
    encounter: str = ""
    directive: str = ""
    directive_to_withdraw: str = ""
    outbound: str = ""
    inbound: str = ""
    dummy_relation: str = ""
    dummy_organisation: str = ""
    decision: str = ""
    review: str = ""
    her_id: str = ""
    subscription: str = ""
    subscription_to_delete: str = ""
    device: str = ""  # assigned to the patient, who consented to it
    device_to_unassign: str = ""
    device_to_register: str = ""  # consented to, registered by the row
    tokens: dict[tuple[str, str], str | None] = field(default_factory=dict)


def _token(platform: Platform, world: World, subject: str, audience: str) -> str | None:
    key = (subject, audience)
    if key in world.tokens:
        return world.tokens[key]
    token: str | None
    if subject == "anonymous":
        token = None
    elif subject == "wrong_audience":
        token = _token(
            platform, world, "treating", "masterdata" if audience != "masterdata" else "journal"
        )
    elif subject in ("treating", "stranger"):
        hpr = TREATING_HPR if subject == "treating" else STRANGER_HPR
        token = gp_headers(
            platform, hpr, unit=GP_UNIT if subject == "treating" else "unit-x", audience=audience
        )["authorization"].removeprefix("Bearer ")
    elif subject == "citizen":
        token = platform.token(audience, subject=world.patient, kind="citizen")
    elif subject == "other_citizen":
        token = platform.token(audience, subject=world.other_patient, kind="citizen")
    elif subject == "lab":
        token = platform.token(
            audience, subject="lab", kind="system", client="lab", scope=LAB_SCOPES
        )
    elif subject in ("nav", "auditor"):
        token = platform.token(audience, subject=subject, kind="system", client=subject, scope="")
    else:
        token = platform.client_token(audience, ALL_SCOPES)
    world.tokens[key] = token
    return token


def api_services(platform: Platform) -> list[str]:
    """The services with an API of their own (the console's pages ask the others': its own
    answers are tested in services/console and tests/e2e)."""
    return sorted(stack.api_services(list(platform.endpoints["services"])))


def headers_for(platform: Platform, world: World, subject: str, audience: str) -> dict[str, str]:
    token = _token(platform, world, subject, audience)
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    if subject == "nav":
        headers["akson-purpose"] = "nav"  # NAV asks for its purpose; no consent is on record
    return headers


def _created_id(answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    return str(answer.headers["location"]).rstrip("/").rsplit("/", 1)[-1]


def _fhir_post(http: httpx.Client, url: str, resource: dict[str, Any], headers: Any) -> str:
    answer = http.post(url, content=json.dumps(resource), headers={**headers, "content-type": FHIR})
    return _created_id(answer)


def _subscription(world: World) -> dict[str, Any]:
    """A subscription to the world patient's documents (its endpoint answers nothing: the
    handshake is retried until the subscription is in error, which changes no row)."""
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Matrise.",
        "criteria": "https://akson.no/fhir/SubscriptionTopic/document-recorded",
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-filter-criteria",
                    "valueString": f"DocumentReference?patient=Patient/{world.patient}",
                }
            ]
        },
        "extension": [{"url": SECRET_URL, "valueString": "m" * 40}],
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }


def _by_subscription(name: str) -> Callable[[World], Call]:
    return lambda w: Call({"subscription_id": getattr(w, name)})


@pytest.fixture(scope="module")
def world(platform: Platform) -> Iterator[World]:
    world = World(new_patient_id(), new_patient_id(), new_patient_id())
    patient = world.patient
    with httpx.Client(timeout=20.0) as http:
        as_gp = {"authorization": f"Bearer {_token(platform, world, 'treating', 'journal')}"}
        with_gp(http, platform, patient, TREATING_HPR)
        for service in ("journal", "consent"):
            relations = platform.db(service).care_relations
            eventually(lambda: relations.find_one({"patient": patient}))  # noqa: B023
        journal = f"{platform.url('journal')}/fhir/R4"
        world.document = _fhir_post(
            http, f"{journal}/DocumentReference", document_reference(patient), as_gp
        )
        observation, _ = lab_report(patient)
        lab = headers_for(platform, world, "lab", "journal")
        world.lab_observation = _fhir_post(http, f"{journal}/Observation", observation, lab)
        world.gp_observation = _fhir_post(http, f"{journal}/Observation", observation, as_gp)
        world.encounter = _fhir_post(
            http, f"{journal}/Encounter", visit(patient, TREATING_HPR, GP_UNIT, "finished"), as_gp
        )
        read = http.get(f"{journal}/DocumentReference/{world.document}", headers=as_gp)
        assert read.status_code == 200, read.text
        world.decision = read.headers["akson-decision-id"].split(",")[0].strip()
        # an emergency access (break-glass) gives the auditors a review
        er = gp_headers(platform, ER_HPR, unit="unit-er", audience="journal")
        emergency = http.get(
            f"{journal}/DocumentReference/{world.document}",
            headers={**er, "akson-emergency-reason": "life_threatening"},
        )
        assert emergency.status_code == 200, emergency.text

        consent = platform.url("consent")
        own = headers_for(platform, world, "citizen", "consent")
        for name in ("directive", "directive_to_withdraw"):
            answer = http.post(f"{consent}/directives", json=block(patient), headers=own)
            setattr(world, name, _created_id(answer))

        messaging = platform.url("messaging")
        world.her_id = new_her_id()
        doctor = headers_for(platform, world, "treating", "messaging")
        sent = http.post(
            f"{messaging}/messages",
            json={
                "kind": "referral",
                "patient": patient,
                "recipient_her_id": world.her_id,
                "text": "Henvisning.",
            },
            headers=doctor,
        )
        assert sent.status_code == 202, sent.text
        world.outbound = sent.json()["id"]
        world.inbound = str(uuid.uuid4())
        delivered = deliver_inbound(http, platform, inbound_bundle(world.inbound, patient))
        assert delivered.status_code == 202, delivered.text
        gp_fhir = headers_for(platform, world, "treating", "messaging")
        for name in ("subscription", "subscription_to_delete"):
            created = _fhir_post(
                http, f"{messaging}/fhir/R4/Subscription", _subscription(world), gp_fhir
            )
            setattr(world, name, created)

        # welfare: the patient's device consents, two devices assigned by the treating GP
        welfare = platform.url("welfare")
        eventually(lambda: platform.db("welfare").care_relations.find_one({"patient": patient}))
        for name in ("device", "device_to_unassign", "device_to_register"):
            device = f"matrix-{name.replace('_', '-')}-{RUN % 10**8}"
            setattr(world, name, device)
            consented = http.post(
                f"{consent}/directives",
                json={
                    "kind": "device",
                    "patient": patient,
                    "device": device,
                    "period_start": "2026-01-01",
                },
                headers=own,
            )
            _created_id(consented)
        projected = platform.db("welfare").patients

        def consents_projected() -> bool:
            held = (projected.find_one({"_id": patient}) or {}).get("directives") or {}
            return {d.get("device") for d in held.values()} >= {
                world.device,
                world.device_to_unassign,
                world.device_to_register,
            }

        eventually(consents_projected)
        nurse = headers_for(platform, world, "treating", "welfare")
        for device in (world.device, world.device_to_unassign):
            registered = http.post(
                f"{welfare}/devices",
                json={"id": device, "kind": "medicine_dispenser", "patient": patient},
                headers=nurse,
            )
            assert registered.status_code == 201, registered.text

        registry = headers_for(platform, world, "all_scopes", "masterdata")
        masterdata = platform.url("masterdata")
        world.dummy_relation = f"rel-{uuid.uuid4().hex[:12]}"
        relation = {
            "relation_id": world.dummy_relation,
            "patient": world.dummy_patient,
            "kind": "gp_list",
            "practitioner": DUMMY_HPR,
            "period_start": "2020-01-01",
        }
        saved = http.put(
            f"{masterdata}/care-relations/{world.dummy_relation}", json=relation, headers=registry
        )
        assert saved.status_code == 204, saved.text
        world.dummy_organisation = as_organisation_number(f"matrix-{RUN % 10_000}")

        auditor = headers_for(platform, world, "auditor", "audit")
        audit = f"{platform.url('audit')}/audit"

        def logged() -> bool:
            answer = http.get(f"{audit}/decisions/{world.decision}", headers=auditor)
            return answer.status_code == 200

        eventually(logged, timeout=30)

        def review() -> str | None:
            answer = http.get(f"{audit}/reviews", params={"patient": patient}, headers=auditor)
            items = answer.json()["items"] if answer.status_code == 200 else []
            return str(items[0]["id"]) if items else None

        world.review = eventually(review, timeout=30)
        for subject in SUBJECTS:  # tokens first, so the matrix itself is one request per cell
            for audience in api_services(platform):
                headers_for(platform, world, subject, audience)
    yield world


# -- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """Who passes the policy on a route (everyone else is refused), and how to call it."""

    allowed: frozenset[str]
    call: Callable[[World], Call] = lambda w: Call()
    # a record that must be in a passing answer (a search answers 200 either way)
    shows: Callable[[World], str] | None = None
    # the route names an existing record: a 404 is a refusal
    existing: bool = False
    # statuses that count as refused besides 401/403 (the token endpoint's OAuth errors)
    refusals: frozenset[int] = frozenset()
    # an answer that is a refusal whatever its status (an event delivery Dapr is told to drop)
    refused_when: Callable[[httpx.Response], bool] | None = None


PUBLIC = Row(EVERYONE)
READERS = only("treating", "citizen", "all_scopes")  # the patient's record: care, own, scope
DIRECTORY_READERS = only("stranger", "treating", "all_scopes")
REGISTRY = only("all_scopes")
AUDITORS = only("auditor")
FHIR_IF_MATCH = {"if-match": 'W/"1"', "content-type": FHIR}


def _observation(world: World, resource_id: str | None = None) -> str:
    observation, _ = lab_report(world.patient)
    if resource_id:
        observation["id"] = resource_id
    return json.dumps(observation)


def _conditional(world: World, tag: str) -> Call:
    """A conditional update by an identifier of the row's own: the first writer creates, a
    later one (who can see it) updates."""
    observation, _ = lab_report(world.patient)
    identifier = {"system": "urn:akson:matrix", "value": f"{tag}-{RUN}"}
    observation["identifier"] = [identifier]
    return Call(
        {"resource_type": "Observation"},
        query={"patient": world.patient, "identifier": f"urn:akson:matrix|{tag}-{RUN}"},
        body=json.dumps(observation),
        content_type=FHIR,
    )


def _dummy_person(world: World) -> str:
    return json.dumps(person(world.dummy_patient)) + "\n"


def _app(client_id: str | None) -> dict[str, Any]:
    """A valid app registration (the admin API's body)."""
    app: dict[str, Any] = {
        "name": "Matrix app",
        "kind": "public",
        "redirect_uris": ["https://app.example/callback"],
        "scopes": ["patient/DocumentReference.rs"],
    }
    return app if client_id is None else {**app, "client_id": client_id}


# liveness, readiness and the subscription list Dapr reads (topics and routes, no data)
HEALTH = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/dapr/subscribe"): PUBLIC,
}


def _dropped(answer: httpx.Response) -> bool:
    try:
        return bool(answer.json() == {"status": "DROP"})
    except ValueError:
        return False


# An event delivery (``POST /events/<topic>``) comes from the sidecar with the app API token;
# no subject's bearer token makes a handler run: the delivery is dropped. These rows are made
# from the routes each service gives Dapr in /dapr/subscribe, so an /events route that is not a
# subscription has no row.
EVENT_DELIVERY = Row(
    NOBODY,
    lambda w: Call(body=json.dumps({"id": str(uuid.uuid4()), "specversion": "1.0", "data": {}})),
    refused_when=_dropped,
)

TABLE: dict[str, dict[tuple[str, str], Row]] = {
    "identity": {
        **HEALTH,
        ("GET", "/.well-known/openid-configuration"): PUBLIC,
        ("GET", "/jwks"): PUBLIC,
        # client authentication, not a platform token: no subject kind gets a token here
        ("POST", "/token"): Row(
            NOBODY,
            lambda w: Call(
                body="grant_type=client_credentials",
                content_type="application/x-www-form-urlencoded",
            ),
            refusals=frozenset({400}),
        ),
        ("GET", "/.well-known/smart-configuration"): PUBLIC,
        # SMART App Launch: the user's browser, not a bearer token; no request, no code
        ("GET", "/authorize"): Row(NOBODY, refusals=frozenset({400})),
        ("GET", "/authorize/callback"): Row(NOBODY, refusals=frozenset({400})),
        ("GET", "/authorize/patient"): Row(NOBODY, refusals=frozenset({400})),
        ("POST", "/authorize/patient"): Row(
            NOBODY,
            lambda w: Call(body="pick=x", content_type="application/x-www-form-urlencoded"),
            refusals=frozenset({400}),
        ),
        # an EHR launch: practitioners only (the policy decides every read the app makes)
        ("POST", "/launch"): Row(
            only("stranger", "treating"), lambda w: Call(body=json.dumps({"patient": w.patient}))
        ),
        # the app registry: its admins' alone (no subject here is one)
        ("POST", "/apps"): Row(NOBODY, lambda w: Call(body=json.dumps(_app("matrix-app")))),
        ("GET", "/apps"): Row(NOBODY),
        ("GET", "/apps/{client_id}"): Row(NOBODY, lambda w: Call({"client_id": "akson-dev-lab"})),
        ("PUT", "/apps/{client_id}"): Row(
            NOBODY,
            lambda w: Call({"client_id": "matrix-app"}, body=json.dumps(_app(None))),
        ),
        ("POST", "/apps/{client_id}/disable"): Row(
            NOBODY, lambda w: Call({"client_id": "matrix-app"})
        ),
    },
    "masterdata": {
        **HEALTH,
        ("GET", "/fhir/R4/metadata"): PUBLIC,
        ("PUT", "/persons/{national_id}"): Row(
            REGISTRY,
            lambda w: Call(
                {"national_id": w.dummy_patient}, body=json.dumps(person(w.dummy_patient))
            ),
        ),
        ("GET", "/persons/{national_id}"): Row(
            READERS, lambda w: Call({"national_id": w.patient}), existing=True
        ),
        ("GET", "/persons"): Row(
            READERS,
            lambda w: Call(query={"identifier": w.patient}),
            shows=lambda w: w.patient,
        ),
        ("GET", "/fhir/R4/Patient/{national_id}"): Row(
            READERS, lambda w: Call({"national_id": w.patient}), existing=True
        ),
        ("GET", "/fhir/R4/Patient"): Row(
            READERS, lambda w: Call(query={"_id": w.patient}), shows=lambda w: w.patient
        ),
        ("PUT", "/practitioners/{hpr_number}"): Row(
            REGISTRY,
            lambda w: Call(
                {"hpr_number": DUMMY_HPR},
                body=json.dumps(
                    {
                        "hpr_number": DUMMY_HPR,
                        "given_name": "Matrise",
                        "family_name": "Syntetisk",
                        "status_from": "2010-01-01",
                        "authorisations": [{"profession": "LE", "valid_from": "2010-01-01"}],
                        "employments": [],
                    }
                ),
            ),
        ),
        ("GET", "/practitioners/{hpr_number}"): Row(
            DIRECTORY_READERS, lambda w: Call({"hpr_number": TREATING_HPR}), existing=True
        ),
        ("GET", "/fhir/R4/Practitioner/{hpr_number}"): Row(
            DIRECTORY_READERS, lambda w: Call({"hpr_number": TREATING_HPR}), existing=True
        ),
        ("GET", "/fhir/R4/PractitionerRole"): Row(
            DIRECTORY_READERS, lambda w: Call(query={"practitioner": TREATING_HPR})
        ),
        ("PUT", "/organisations/{org_number}"): Row(
            REGISTRY,
            lambda w: Call(
                {"org_number": w.dummy_organisation},
                body=json.dumps(
                    {
                        "org_number": w.dummy_organisation,
                        "name": "Matrise",
                        "municipality": "4601",
                    }
                ),
            ),
        ),
        ("GET", "/organisations/{org_number}"): Row(
            DIRECTORY_READERS, lambda w: Call({"org_number": "974760673"}), existing=True
        ),
        ("GET", "/organisations"): Row(
            DIRECTORY_READERS, lambda w: Call(query={"municipality": "4601", "_count": "1"})
        ),
        ("GET", "/fhir/R4/Organization/{org_number}"): Row(
            DIRECTORY_READERS, lambda w: Call({"org_number": "974760673"}), existing=True
        ),
        ("PUT", "/care-relations/{relation_id}"): Row(
            REGISTRY,
            lambda w: Call(
                {"relation_id": w.dummy_relation},
                body=json.dumps(
                    {
                        "relation_id": w.dummy_relation,
                        "patient": w.dummy_patient,
                        "kind": "gp_list",
                        "practitioner": DUMMY_HPR,
                        "period_start": "2020-01-01",
                    }
                ),
            ),
        ),
        ("GET", "/care-relations"): Row(
            READERS, lambda w: Call(query={"patient": w.patient}), shows=lambda w: w.patient
        ),
        ("POST", "/care-relations/{relation_id}/end"): Row(
            REGISTRY,
            lambda w: Call(
                {"relation_id": w.dummy_relation}, body=json.dumps({"period_end": "2030-01-01"})
            ),
            existing=True,
        ),
        ("POST", "/import/{kind}"): Row(
            REGISTRY,
            lambda w: Call(
                {"kind": "persons"}, body=_dummy_person(w), content_type="application/x-ndjson"
            ),
        ),
    },
    "journal": {
        **HEALTH,
        ("GET", "/fhir/R4/metadata"): PUBLIC,
        ("GET", "/fhir/R4/Patient/{patient}/$summary"): Row(
            READERS, lambda w: Call({"patient": w.patient}), shows=lambda w: w.document
        ),
        # a new result: delivered by whoever may write it (the lab by its scope)
        ("POST", "/fhir/R4/{resource_type}"): Row(
            only("treating", "lab", "all_scopes"),
            lambda w: Call(
                {"resource_type": "Observation"}, body=_observation(w), content_type=FHIR
            ),
        ),
        ("GET", "/fhir/R4/{resource_type}"): Row(
            READERS,
            lambda w: Call({"resource_type": "DocumentReference"}, query={"patient": w.patient}),
            shows=lambda w: w.document,
        ),
        # a match the caller may see but not write reads like an unknown one: 404
        ("PUT", "/fhir/R4/{resource_type}"): Row(
            only("treating", "lab", "all_scopes"),
            lambda w: _conditional(w, "journal"),
            existing=True,
        ),
        # the write asked of the policy without storing (a transaction's first phase)
        ("POST", "/fhir/R4/{resource_type}/$validate"): Row(
            only("treating", "lab", "all_scopes"),
            lambda w: Call(
                {"resource_type": "Observation"}, body=_observation(w), content_type=FHIR
            ),
        ),
        ("GET", "/fhir/R4/{resource_type}/{resource_id}"): Row(
            READERS,
            lambda w: Call({"resource_type": "DocumentReference", "resource_id": w.document}),
            existing=True,
        ),
        # the lab's own result: the lab and the treating GP may correct it; a scope alone
        # (all_scopes: not its record) may not
        ("PUT", "/fhir/R4/{resource_type}/{resource_id}"): Row(
            only("treating", "lab"),
            lambda w: Call(
                {"resource_type": "Observation", "resource_id": w.lab_observation},
                body=_observation(w, w.lab_observation),
                content_type=FHIR,
                headers={"if-match": 'W/"1"'},
            ),
            existing=True,
        ),
        # the GP's result: the lab may not invalidate it (issue 14), the GP may
        ("DELETE", "/fhir/R4/{resource_type}/{resource_id}"): Row(
            only("treating"),
            lambda w: Call({"resource_type": "Observation", "resource_id": w.gp_observation}),
            existing=True,
        ),
        ("GET", "/fhir/R4/{resource_type}/{resource_id}/_history"): Row(
            READERS,
            lambda w: Call({"resource_type": "DocumentReference", "resource_id": w.document}),
            existing=True,
            shows=lambda w: w.document,
        ),
        ("GET", "/fhir/R4/{resource_type}/{resource_id}/_history/{version}"): Row(
            READERS,
            lambda w: Call(
                {"resource_type": "DocumentReference", "resource_id": w.document, "version": "1"}
            ),
            existing=True,
        ),
        ("POST", "/visits/{encounter_id}/supplies"): Row(
            only("treating"),
            lambda w: Call(
                {"encounter_id": w.encounter},
                body=json.dumps([{"item": "ART-1001", "quantity": 1}]),
            ),
            existing=True,
        ),
    },
    # the one FHIR base: each request decided by the owner it is forwarded to, with the
    # caller's token for the gateway (the rows are the journal's, through the gateway)
    "gateway": {
        **HEALTH,
        ("GET", "/fhir/R4/metadata"): PUBLIC,
        ("GET", "/fhir/R4/.well-known/smart-configuration"): PUBLIC,
        # every owner asked with the caller's token: what it refuses is not in the answer
        ("GET", "/fhir/R4/Patient/{patient}/$everything"): Row(
            READERS, lambda w: Call({"patient": w.patient}), shows=lambda w: w.document
        ),
        # a batch: the 200 is the Bundle's; the entry's own status is the owner's decision
        ("POST", "/fhir/R4"): Row(
            READERS,
            lambda w: Call(
                body=json.dumps(
                    {
                        "resourceType": "Bundle",
                        "type": "batch",
                        "entry": [
                            {"request": {"method": "GET", "url": f"DocumentReference/{w.document}"}}
                        ],
                    }
                ),
                content_type=FHIR,
            ),
            shows=lambda w: '"status":"200 OK"',
        ),
        ("GET", "/fhir/R4/{resource_type}"): Row(
            READERS,
            lambda w: Call({"resource_type": "DocumentReference"}, query={"patient": w.patient}),
            shows=lambda w: w.document,
        ),
        ("POST", "/fhir/R4/{resource_type}"): Row(
            only("treating", "lab", "all_scopes"),
            lambda w: Call(
                {"resource_type": "Observation"}, body=_observation(w), content_type=FHIR
            ),
        ),
        # a match the caller may see but not write reads like an unknown one: 404
        ("PUT", "/fhir/R4/{resource_type}"): Row(
            only("treating", "lab", "all_scopes"),
            lambda w: _conditional(w, "gateway"),
            existing=True,
        ),
        ("GET", "/fhir/R4/{resource_type}/{rest}"): Row(
            READERS,
            lambda w: Call({"resource_type": "DocumentReference", "rest": w.document}),
            existing=True,
        ),
        ("POST", "/fhir/R4/{resource_type}/{rest}"): Row(
            READERS,
            lambda w: Call(
                {"resource_type": "DocumentReference", "rest": "_search"},
                body=f"patient={w.patient}",
                content_type="application/x-www-form-urlencoded",
            ),
            shows=lambda w: w.document,
        ),
        ("PUT", "/fhir/R4/{resource_type}/{rest}"): Row(
            only("treating", "lab"),
            lambda w: Call(
                {"resource_type": "Observation", "rest": w.lab_observation},
                body=_observation(w, w.lab_observation),
                content_type=FHIR,
                headers={"if-match": 'W/"1"'},
            ),
            existing=True,
        ),
        ("DELETE", "/fhir/R4/{resource_type}/{rest}"): Row(
            only("treating"),
            lambda w: Call({"resource_type": "Observation", "rest": w.gp_observation}),
            existing=True,
        ),
    },
    "consent": {
        **HEALTH,
        ("GET", "/fhir/R4/metadata"): PUBLIC,
        ("POST", "/directives"): Row(
            READERS, lambda w: Call(body=json.dumps({**block(w.patient), "reason": REASON}))
        ),
        ("GET", "/directives/{directive_id}"): Row(
            READERS, lambda w: Call({"directive_id": w.directive}), existing=True
        ),
        ("GET", "/directives"): Row(
            READERS, lambda w: Call(query={"patient": w.patient}), shows=lambda w: w.directive
        ),
        ("POST", "/directives/{directive_id}/withdraw"): Row(
            READERS,
            lambda w: Call(
                {"directive_id": w.directive_to_withdraw}, body=json.dumps({"reason": REASON})
            ),
            existing=True,
        ),
        ("GET", "/fhir/R4/Consent/{directive_id}"): Row(
            READERS, lambda w: Call({"directive_id": w.directive}), existing=True
        ),
        ("GET", "/fhir/R4/Consent"): Row(
            READERS, lambda w: Call(query={"patient": w.patient}), shows=lambda w: w.directive
        ),
    },
    "messaging": {
        **HEALTH,
        ("POST", "/messages"): Row(
            only("treating", "all_scopes"),
            lambda w: Call(
                body=json.dumps(
                    {
                        "kind": "referral",
                        "patient": w.patient,
                        "recipient_her_id": w.her_id,
                        "text": "Matrise.",
                    }
                )
            ),
        ),
        ("GET", "/messages"): Row(
            READERS, lambda w: Call(query={"patient": w.patient}), shows=lambda w: w.outbound
        ),
        ("GET", "/messages/{message_id}"): Row(
            READERS, lambda w: Call({"message_id": w.outbound}), existing=True
        ),
        ("POST", "/messages/{message_id}/resend"): Row(
            only("treating", "all_scopes"),
            lambda w: Call({"message_id": w.outbound}),
            existing=True,
        ),
        # the exchange's inbound token, never a platform token
        ("POST", "/messages/inbound"): Row(
            NOBODY, lambda w: Call(body=json.dumps(inbound_bundle(str(uuid.uuid4()), w.patient)))
        ),
        ("GET", "/messages/inbound"): Row(
            READERS, lambda w: Call(query={"patient": w.patient}), shows=lambda w: w.inbound
        ),
        ("GET", "/messages/inbound/{message_id}"): Row(
            READERS, lambda w: Call({"message_id": w.inbound}), existing=True
        ),
        # topic-based subscriptions (issue 18): the topics are the platform's catalogue; a
        # subscription is decided as a search of the patient's documents, and is its owner's
        ("GET", "/fhir/R4/metadata"): PUBLIC,
        ("GET", "/fhir/R4/SubscriptionTopic"): PUBLIC,
        ("GET", "/fhir/R4/SubscriptionTopic/{topic_id}"): Row(
            EVERYONE, lambda w: Call({"topic_id": "document-recorded"})
        ),
        ("POST", "/fhir/R4/Subscription"): Row(
            READERS, lambda w: Call(body=json.dumps(_subscription(w)), content_type=FHIR)
        ),
        ("GET", "/fhir/R4/Subscription"): Row(only("treating"), shows=lambda w: w.subscription),
        ("GET", "/fhir/R4/Subscription/{subscription_id}"): Row(
            only("treating"), _by_subscription("subscription"), existing=True
        ),
        ("GET", "/fhir/R4/Subscription/{subscription_id}/$status"): Row(
            only("treating"), _by_subscription("subscription"), existing=True
        ),
        ("GET", "/fhir/R4/Subscription/{subscription_id}/$events"): Row(
            only("treating"), _by_subscription("subscription"), existing=True
        ),
        ("DELETE", "/fhir/R4/Subscription/{subscription_id}"): Row(
            only("treating"), _by_subscription("subscription_to_delete"), existing=True
        ),
    },
    # welfare technology (issue 19): assignments need the patient's device consent (given
    # for the world's devices); device messages come from hubs only, and no subject here is one
    # (tests/integration/test_welfare.py has the hub)
    "welfare": {
        **HEALTH,
        ("POST", "/devices"): Row(
            only("treating"),
            lambda w: Call(
                body=json.dumps({"id": w.device_to_register, "kind": "scale", "patient": w.patient})
            ),
        ),
        ("GET", "/devices"): Row(
            only("treating", "citizen"),
            lambda w: Call(query={"patient": w.patient}),
            shows=lambda w: w.device,
        ),
        ("GET", "/devices/{device_id}"): Row(
            only("treating", "citizen"), lambda w: Call({"device_id": w.device}), existing=True
        ),
        # assigned already: the treating GP passes the policy to the 409
        ("POST", "/devices/{device_id}/assign"): Row(
            only("treating"),
            lambda w: Call({"device_id": w.device}, body=json.dumps({"patient": w.patient})),
            existing=True,
        ),
        ("POST", "/devices/{device_id}/unassign"): Row(
            only("treating"), lambda w: Call({"device_id": w.device_to_unassign}), existing=True
        ),
        ("GET", "/fhir/R4/metadata"): PUBLIC,
        ("POST", "/fhir/R4/$process-message"): Row(
            NOBODY,
            lambda w: Call(
                body=json.dumps(
                    {
                        "resourceType": "Bundle",
                        "type": "message",
                        "entry": [
                            {
                                "resource": {
                                    "resourceType": "MessageHeader",
                                    "id": uuid.uuid4().hex,
                                    "eventCoding": {"code": "device-report"},
                                    "source": {"endpoint": "https://hub.example/fhir"},
                                }
                            },
                            {
                                "resource": {
                                    "resourceType": "MedicationAdministration",
                                    "status": "completed",
                                    "medicationCodeableConcept": {"coding": [{"code": "N02BE01"}]},
                                    "effectiveDateTime": "2026-12-01T08:00:00Z",
                                    "device": [{"reference": f"Device/{w.device}"}],
                                }
                            },
                        ],
                    }
                ),
                content_type=FHIR,
            ),
        ),
    },
    "integrations": {
        **HEALTH,
        ("GET", "/reconciliation"): Row(REGISTRY, lambda w: Call(query={"date": "2025-01-01"})),
        ("GET", "/dead-letters"): Row(REGISTRY),
    },
    "audit": {
        **HEALTH,
        ("GET", "/audit/decisions"): Row(AUDITORS, lambda w: Call(query={"patient": w.patient})),
        ("GET", "/audit/decisions/export"): Row(
            AUDITORS, lambda w: Call(query={"patient": w.patient, "format": "csv"})
        ),
        ("GET", "/audit/decisions/{decision_id}"): Row(
            AUDITORS, lambda w: Call({"decision_id": w.decision}), existing=True
        ),
        ("GET", "/audit/chain/verify"): Row(AUDITORS),
        ("GET", "/audit/gaps"): Row(AUDITORS),
        ("GET", "/audit/signals"): Row(AUDITORS),
        ("GET", "/audit/quarantine"): Row(AUDITORS),
        ("GET", "/audit/reviews"): Row(AUDITORS, lambda w: Call(query={"patient": w.patient})),
        ("POST", "/audit/reviews/{review_id}"): Row(
            AUDITORS,
            lambda w: Call(
                {"review_id": w.review},
                body=json.dumps({"outcome": "justified", "comment": "Matrise."}),
            ),
            existing=True,
        ),
        # every subject's own access log (the auditor's is empty); nobody else's
        ("GET", "/audit/access-log"): Row(only("citizen", "other_citizen", "auditor")),
        # the policy engine's upload token, never a platform token
        ("POST", "/opa/decision-logs"): Row(NOBODY, lambda w: Call(body="[]")),
    },
}


# -- the run ------------------------------------------------------------------------------------


def routes(http: httpx.Client, platform: Platform, service: str) -> list[tuple[str, str]]:
    answer = http.get(f"{platform.url(service)}/openapi.json")
    assert answer.status_code == 200, answer.text
    found = []
    for path, operations in answer.json()["paths"].items():
        for method in operations:
            if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                found.append((method.upper(), path))
    return sorted(found)


def subscriptions(
    http: httpx.Client, platform: Platform, service: str
) -> dict[tuple[str, str], Row]:
    answer = http.get(f"{platform.url(service)}/dapr/subscribe")
    assert answer.status_code == 200, answer.text
    return {("POST", str(entry["route"])): EVENT_DELIVERY for entry in answer.json()}


def outcome(row: Row, world: World, answer: httpx.Response) -> str:
    status = answer.status_code
    if row.refused_when is not None and row.refused_when(answer):
        return "refused"
    if status in (401, 403) or status in row.refusals or (status == 404 and row.existing):
        return "refused"
    if 200 <= status < 300 or status in (409, 412):
        if row.shows is not None and row.shows(world) not in answer.text:
            return "refused"  # filtered out
        return "passed"
    return f"unexpected {status}"


def test_every_route_of_every_service_has_a_row_and_agrees_with_it(
    platform: Platform, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    missing, stale, wrong, unexpected = [], [], [], []
    rows_total = 0
    counts = {"cells": 0, "passed": 0, "refused": 0, "unauthorised": 0, "wrongful": 0}
    with httpx.Client(timeout=30.0) as http:
        services = api_services(platform)
        assert set(services) == set(TABLE), "a service without a table, or a table without one"
        for service in services:
            found = routes(http, platform, service)
            table = {**TABLE[service], **subscriptions(http, platform, service)}
            rows_total += len(table)
            missing += [f"{service} {m} {p}" for m, p in found if (m, p) not in table]
            stale += [f"{service} {m} {p}" for m, p in table if (m, p) not in found]
            for method, path in found:
                row = table.get((method, path))
                if row is None:
                    continue
                call = row.call(world)
                url = platform.url(service) + path.format(**call.path)
                for subject in SUBJECTS:
                    headers = {**headers_for(platform, world, subject, service), **call.headers}
                    if call.body is not None:
                        headers.setdefault("content-type", call.content_type)
                    answer = http.request(
                        method, url, params=call.query, content=call.body, headers=headers
                    )
                    got = outcome(row, world, answer)
                    counts["cells"] += 1
                    cell = f"{service} {method} {path} × {subject}: {answer.status_code}"
                    if got.startswith("unexpected"):
                        unexpected.append(f"{cell} {answer.text[:200]}")
                        continue
                    counts[got] += 1
                    if got == "passed" and subject not in row.allowed:
                        counts["unauthorised"] += 1
                        wrong.append(f"unauthorised success: {cell}")
                    elif got == "refused" and subject in row.allowed:
                        counts["wrongful"] += 1
                        wrong.append(f"wrongful refusal: {cell} {answer.text[:200]}")
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(  # noqa: T201
            f"\nroute matrix: {len(SUBJECTS)} subject kinds × "
            f"{rows_total} routes = {counts['cells']} cells in "
            f"{elapsed:.1f} s; passed {counts['passed']}, refused {counts['refused']}; "
            f"{counts['unauthorised']} unauthorised successes, "
            f"{counts['wrongful']} wrongful refusals, {len(unexpected)} unexpected"
        )
    assert not missing, f"routes in OpenAPI without a row in the matrix: {missing}"
    assert not stale, f"rows for routes no service has: {stale}"
    assert not unexpected, "\n".join(unexpected)
    assert not wrong, "\n".join(wrong)
    # every subject kind is both let through and refused somewhere (the matrix has teeth)
    for subject in SUBJECTS:
        rows = [r for table in TABLE.values() for r in table.values()]
        assert any(subject in r.allowed for r in rows), subject
        assert any(subject not in r.allowed for r in rows), subject
