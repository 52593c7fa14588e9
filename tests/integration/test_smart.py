"""SMART on FHIR (issue 18, part 1) against the running stack: the app registry and its admin
API, SMART App Launch 2.x (authorization code + PKCE, the development upstream login page,
standalone and EHR launch), refresh rotation with reuse detection, SMART Backend Services with
a ``jwks_uri``, scopes that only narrow (decided by the policy, in the decision log with the
app), and the demo app ``examples/smart_app.py`` end to end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.integration.conftest import Platform, eventually
from tests.integration.test_foundation import document_reference, gp_headers, put_person
from tests.support import JWT_BEARER, as_organisation_number, handed, new_patient_id

pytestmark = pytest.mark.integration

GATEWAY = "gateway"
REDIRECT = "http://127.0.0.1:9/callback"  # never followed: the test reads the Location
APP_SCOPES = [
    "launch",
    "launch/patient",
    "launch/encounter",
    "openid",
    "fhirUser",
    "offline_access",
    "patient/DocumentReference.rs",
    "user/DocumentReference.rs",
]
UNIT = "unit-smart"
MUNICIPALITY = "4601"  # put_person's and gp_headers' municipality
_hpr = iter(range(9_260_000, 9_269_999))


@dataclass
class World:
    platform: Platform
    identity: str
    fhir: str
    admin: dict[str, str]
    app: str  # a public SMART app's client id
    patient: str  # a citizen, treated by the GP
    other_patient: str  # treated by the same GP
    hpr: str
    gp: dict[str, str]  # the GP's exchanged token for the FHIR base (no SMART scopes)
    document: str
    other_document: str


def registration(client_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "name": "SMART test app",
        "kind": "public",
        "redirect_uris": [REDIRECT],
        "scopes": APP_SCOPES,
        "municipalities": [MUNICIPALITY],
        **changes,
    }


def new_app(world_admin: dict[str, str], identity: str, **changes: Any) -> str:
    client_id = f"smart-{uuid.uuid4().hex[:10]}"
    answer = httpx.post(
        f"{identity}/apps", json=registration(client_id, **changes), headers=world_admin
    )
    assert answer.status_code == 201, answer.text
    return client_id


@pytest.fixture(scope="module")
def world(platform: Platform) -> Iterator[World]:
    identity = platform.url("identity")
    fhir = platform.endpoints["fhir"]["base"]
    admin_token = platform.token("identity", subject="admin", kind="system", client="admin")
    admin = {"authorization": f"Bearer {admin_token}"}
    patient, other_patient, hpr = new_patient_id(), new_patient_id(), str(next(_hpr))
    with httpx.Client(timeout=20.0) as http:
        for someone in (patient, other_patient):
            assert put_person(http, platform, someone).status_code == 200
            platform.relate(someone, hpr=hpr)
        gp = gp_headers(platform, hpr, unit=UNIT, audience=GATEWAY)
        documents = []
        for someone in (patient, other_patient):
            created = http.post(
                f"{fhir}/DocumentReference",
                json=document_reference(someone),
                headers={**gp, "content-type": "application/fhir+json"},
            )
            assert created.status_code == 201, created.text
            documents.append(created.json()["id"])
    yield World(
        platform,
        identity,
        fhir,
        admin,
        new_app(admin, identity),
        patient,
        other_patient,
        hpr,
        gp,
        *documents,
    )


# -- the browser's part -----


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def authorize(
    world: World,
    *,
    scope: str,
    challenge: str,
    identifier: str,
    who: str = "citizen",
    client_id: str | None = None,
    launch: str | None = None,
    unit: str | None = None,
    picker: bool = False,
) -> dict[str, str]:
    """/authorize → the development login page → identity's callback → the app's redirect
    URI: its query (code and state, or error); with ``picker``, where identity sends a
    practitioner to pick the patient instead (``location``)."""
    params = {
        "response_type": "code",
        "client_id": client_id or world.app,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st-1",
        "aud": world.fhir,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if launch:
        params["launch"] = launch
    with httpx.Client(timeout=10.0) as browser:
        to_login = browser.get(f"{world.identity}/authorize", params=params)
        assert to_login.status_code == 303, to_login.text
        login = to_login.headers["location"]
        assert login.startswith(world.platform.endpoints["dev_login"]["url"]), login
        page = browser.get(login)
        assert page.status_code == 200 and "<form" in page.text
        form = {"request": query_of(login)["request"], "who": who, "identifier": identifier}
        if unit:
            form["unit"] = unit
        to_identity = browser.post(login.split("?")[0], data=form)
        assert to_identity.status_code == 303, to_identity.text
        handed(query_of(to_identity.headers["location"])["id_token"])
        to_app = browser.get(to_identity.headers["location"])
        assert to_app.status_code == 303, to_app.text
        back = to_app.headers["location"]
    if picker:
        assert back.startswith(f"{world.identity}/authorize/patient?pick="), back
        return {"location": back}
    assert back.startswith(REDIRECT), back
    answer = query_of(back)
    assert answer.get("state") == "st-1"
    return answer


def exchange_code(
    world: World, code: str, verifier: str, client_id: str | None = None
) -> httpx.Response:
    return world.platform.token_response(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": client_id or world.app,
        }
    )


def launched(world: World, scope: str, **login: Any) -> dict[str, Any]:
    verifier, challenge = pkce()
    answer = authorize(world, scope=scope, challenge=challenge, **login)
    assert "code" in answer, answer
    issued = exchange_code(world, answer["code"], verifier)
    assert issued.status_code == 200, issued.text
    tokens: dict[str, Any] = issued.json()
    for name in ("access_token", "refresh_token", "id_token"):
        if name in tokens:
            handed(tokens[name])
    return tokens


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens['access_token']}"}


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


# -- discovery and the registry -----


def test_the_smart_configuration_is_on_the_fhir_base_and_names_identity(world: World) -> None:
    for url in (world.fhir, world.identity):
        smart = httpx.get(f"{url}/.well-known/smart-configuration").json()
        assert smart["authorization_endpoint"] == f"{world.identity}/authorize"
        assert smart["token_endpoint"] == f"{world.identity}/token"
        assert smart["code_challenge_methods_supported"] == ["S256"]
        assert {"launch-ehr", "launch-standalone", "permission-v2", "client-public"} <= set(
            smart["capabilities"]
        )


def test_the_app_registry_is_its_admins_and_refuses_bad_registrations(
    world: World, platform: Platform
) -> None:
    apps = f"{world.identity}/apps"
    client_id = f"smart-{uuid.uuid4().hex[:10]}"
    # anyone else: refused by the policy (the auditor, a system client with every scope)
    auditor = platform.token("identity", subject="aud", kind="system", client="auditor")
    for headers in ({"authorization": f"Bearer {auditor}"}, world.gp, {}):
        answer = httpx.post(apps, json=registration(client_id), headers=headers)
        assert answer.status_code in (401, 403), answer.text
    bad: list[dict[str, Any]] = [
        {"redirect_uris": ["http://app.example/callback"]},
        {"redirect_uris": ["callback"]},
        {"scopes": ["DocumentReference.read"]},
        {"kind": "confidential"},
        {"roles": ["admin"]},
        {"jwks_uri": "ftp://keys.example"},
    ]
    for changes in bad:
        answer = httpx.post(apps, json=registration(client_id, **changes), headers=world.admin)
        assert answer.status_code == 422, (changes, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    created = httpx.post(apps, json=registration(client_id), headers=world.admin)
    assert created.status_code == 201 and created.json()["status"] == "active"
    again = httpx.post(apps, json=registration(client_id), headers=world.admin)
    assert again.status_code == 409
    listed = httpx.get(apps, headers=world.admin).json()
    assert client_id in {a["client_id"] for a in listed}
    changed = {k: v for k, v in registration(client_id).items() if k != "client_id"}
    changed["scopes"] = ["patient/DocumentReference.r", "launch/patient"]
    updated = httpx.put(f"{apps}/{client_id}", json=changed, headers=world.admin)
    assert updated.status_code == 200 and updated.json()["scopes"] == changed["scopes"]
    assert httpx.get(f"{apps}/{client_id}", headers=world.admin).json()["name"] == changed["name"]
    # a platform client is the seed's: not changed here
    seeded = httpx.put(f"{apps}/akson-dev-lab", json=changed, headers=world.admin)
    assert seeded.status_code == 409
    assert httpx.get(f"{apps}/no-such-app", headers=world.admin).status_code == 404
    # disabled: no more authorisation
    disabled = httpx.post(f"{apps}/{client_id}/disable", headers=world.admin)
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    _, challenge = pkce()
    refused = httpx.get(
        f"{world.identity}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": "launch/patient",
            "aud": world.fhir,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"


# -- standalone launch: the citizen -----


def test_a_standalone_launch_grants_narrowed_scopes_that_read_only_inside_them(
    world: World, platform: Platform
) -> None:
    tokens = launched(
        world,
        "launch/patient openid fhirUser offline_access patient/*.rs system/*.rs",
        identifier=world.patient,
    )
    # requested ∩ the app's allowed ∩ what a citizen may have
    granted = set(tokens["scope"].split())
    assert granted == {
        "launch/patient",
        "openid",
        "fhirUser",
        "offline_access",
        "patient/DocumentReference.rs",
    }
    assert tokens["patient"] == world.patient and tokens["token_type"] == "Bearer"
    assert claims(tokens["id_token"])["fhirUser"] == f"{world.fhir}/Patient/{world.patient}"
    access = claims(tokens["access_token"])
    assert access["client_id"] == world.app and access["aud"] == GATEWAY
    headers = bearer(tokens)
    # inside the scope: the own documents, read and searched
    read = httpx.get(f"{world.fhir}/DocumentReference/{world.document}", headers=headers)
    assert read.status_code == 200, read.text
    found = httpx.get(
        f"{world.fhir}/DocumentReference", params={"patient": world.patient}, headers=headers
    )
    assert found.status_code == 200
    assert world.document in {e["resource"]["id"] for e in found.json().get("entry", [])}
    # outside: another type of the same record, which the citizen reads without the app
    own = platform.token(GATEWAY, subject=world.patient, kind="citizen")
    patient_url = f"{world.fhir}/Patient/{world.patient}"
    assert httpx.get(patient_url, headers={"authorization": f"Bearer {own}"}).status_code == 200
    assert httpx.get(patient_url, headers=headers).status_code in (403, 404)
    # a search outside the scope finds nothing (and is decided, and logged, as refused)
    other_type = httpx.get(
        f"{world.fhir}/AllergyIntolerance", params={"patient": world.patient}, headers=headers
    )
    assert other_type.status_code == 200 and not other_type.json().get("entry")

    # auditors see which app made each access, and why it was refused
    def logged() -> Any:
        return platform.db("audit").decisions.find_one(
            {"app": world.app, "resource_type": "AllergyIntolerance", "allow": False}
        )

    decision = eventually(logged, timeout=30)
    assert "outside_granted_scopes" in decision["reasons"]
    assert decision["record"]["input"]["subject"]["launch_patient"] == world.patient


def test_only_users_of_a_municipality_that_enabled_the_app_may_authorise_it(
    world: World,
) -> None:
    elsewhere = new_app(world.admin, world.identity, municipalities=["5001"])
    _, challenge = pkce()
    answer = authorize(
        world,
        scope="launch/patient",
        challenge=challenge,
        identifier=world.patient,
        client_id=elsewhere,
    )
    assert answer["error"] == "access_denied" and "code" not in answer


def test_pkce_the_code_and_the_redirect_uri_are_checked(world: World) -> None:
    verifier, challenge = pkce()
    answer = authorize(world, scope="launch/patient", challenge=challenge, identifier=world.patient)
    wrong = exchange_code(world, answer["code"], pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # the code was spent by the failed attempt: single use whatever the outcome
    spent = exchange_code(world, answer["code"], verifier)
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"

    verifier, challenge = pkce()
    answer = authorize(
        world, scope="launch/patient offline_access", challenge=challenge, identifier=world.patient
    )
    first = exchange_code(world, answer["code"], verifier)
    assert first.status_code == 200
    refresh_token = handed(first.json()["refresh_token"])
    handed(first.json()["access_token"])
    reused = exchange_code(world, answer["code"], verifier)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # a code presented twice was stolen: the refresh token it gave is revoked too
    refreshed = world.platform.token_response(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": world.app}
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"

    # another client may not redeem it; a public client is no confidential one
    verifier, challenge = pkce()
    answer = authorize(world, scope="launch/patient", challenge=challenge, identifier=world.patient)
    other = new_app(world.admin, world.identity)
    stolen = exchange_code(world, answer["code"], verifier, client_id=other)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    unknown = exchange_code(world, "x", verifier, client_id="akson-dev-lab")
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"

    base = {
        "response_type": "code",
        "client_id": world.app,
        "redirect_uri": REDIRECT,
        "scope": "launch/patient",
        "aud": world.fhir,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-2",
    }
    # an unregistered redirect URI: an error here, never a redirect to it
    for changes in ({"redirect_uri": "https://evil.example/cb"}, {"client_id": "no-such-app"}):
        answer_ = httpx.get(f"{world.identity}/authorize", params={**base, **changes})
        assert answer_.status_code == 400 and answer_.json()["error"] == "invalid_request"
        assert "location" not in answer_.headers
    # other errors go back to the app with its state
    for changes, error in (
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"aud": "https://other.example/fhir"}, "invalid_request"),
    ):
        answer_ = httpx.get(f"{world.identity}/authorize", params={**base, **changes})
        assert answer_.status_code == 303, answer_.text
        back = query_of(answer_.headers["location"])
        assert back["error"] == error and back["state"] == "st-2"


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(world: World) -> None:
    tokens = launched(world, "launch/patient offline_access patient/DocumentReference.rs",
                      identifier=world.patient)  # fmt: skip
    first = tokens["refresh_token"]

    def refresh(token: str) -> httpx.Response:
        return world.platform.token_response(
            {"grant_type": "refresh_token", "refresh_token": token, "client_id": world.app}
        )

    rotated = refresh(first)
    assert rotated.status_code == 200, rotated.text
    second = handed(rotated.json()["refresh_token"])
    handed(rotated.json()["access_token"])
    assert second != first
    assert rotated.json()["scope"] == tokens["scope"]
    assert rotated.json()["patient"] == world.patient
    read = httpx.get(
        f"{world.fhir}/DocumentReference/{world.document}", headers=bearer(rotated.json())
    )
    assert read.status_code == 200
    # the old one again: refused, and the whole family with it (the new one too)
    reused = refresh(first)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    revoked = refresh(second)
    assert revoked.status_code == 400 and revoked.json()["error"] == "invalid_grant"
    # stored hashed: the database holds no refresh token
    stored = world.platform.db("identity").refresh_tokens.find_one({"client_id": world.app})
    assert stored is not None and first not in json.dumps(stored, default=str)


# -- EHR launch: the practitioner -----


def test_an_ehr_launch_binds_the_patient_and_the_scopes_narrow_to_them(
    world: World, platform: Platform
) -> None:
    ehr = gp_headers(platform, world.hpr, unit=UNIT, audience="identity")
    made = httpx.post(
        f"{world.identity}/launch",
        json={"patient": world.patient, "encounter": "enc-smart-1"},
        headers=ehr,
    )
    assert made.status_code == 201, made.text
    launch = made.json()["launch"]
    citizen = platform.token("identity", subject=world.patient, kind="citizen")
    refused = httpx.post(
        f"{world.identity}/launch",
        json={"patient": world.patient},
        headers={"authorization": f"Bearer {citizen}"},
    )
    assert refused.status_code == 403
    tokens = launched(
        world,
        "launch launch/encounter openid fhirUser patient/DocumentReference.rs",
        who="personnel",
        identifier=world.hpr,
        unit=as_organisation_number(UNIT),
        launch=launch,
    )
    assert tokens["patient"] == world.patient and tokens["encounter"] == "enc-smart-1"
    assert "launch/encounter" in tokens["scope"].split()
    assert claims(tokens["id_token"])["fhirUser"] == f"{world.fhir}/Practitioner/{world.hpr}"
    headers = bearer(tokens)
    inside = httpx.get(f"{world.fhir}/DocumentReference/{world.document}", headers=headers)
    assert inside.status_code == 200, inside.text
    # the GP treats the other patient too (their own token reads the document) ...
    theirs = httpx.get(f"{world.fhir}/DocumentReference/{world.other_document}", headers=world.gp)
    assert theirs.status_code == 200
    # ... but the app was launched for this patient only
    outside = httpx.get(f"{world.fhir}/DocumentReference/{world.other_document}", headers=headers)
    assert outside.status_code in (403, 404), outside.text
    search = httpx.get(
        f"{world.fhir}/DocumentReference", params={"patient": world.other_patient}, headers=headers
    )
    assert search.status_code == 200 and not search.json().get("entry")
    # a launch is used once
    verifier, challenge = pkce()
    again = authorize(
        world,
        scope="launch patient/DocumentReference.rs",
        challenge=challenge,
        who="personnel",
        identifier=world.hpr,
        unit=as_organisation_number(UNIT),
        launch=launch,
    )
    assert again["error"] == "access_denied"


def test_a_practitioners_standalone_launch_picks_the_patient(world: World) -> None:
    verifier, challenge = pkce()
    with httpx.Client(timeout=10.0) as browser:
        picker = authorize(
            world,
            scope="launch/patient patient/DocumentReference.rs",
            challenge=challenge,
            who="personnel",
            identifier=world.hpr,
            unit=as_organisation_number(UNIT),
            picker=True,
        )
        page = browser.get(picker["location"])
        assert page.status_code == 200 and 'name="patient"' in page.text
        chosen = browser.post(
            f"{world.identity}/authorize/patient",
            data={"pick": query_of(picker["location"])["pick"], "patient": world.other_patient},
        )
        assert chosen.status_code == 303, chosen.text
        back = query_of(chosen.headers["location"])
        assert back["state"] == "st-1"
        # a choice is made once
        again = browser.post(
            f"{world.identity}/authorize/patient",
            data={"pick": query_of(picker["location"])["pick"], "patient": world.patient},
        )
        assert again.status_code == 400 and again.json()["error"] == "invalid_request"
    issued = exchange_code(world, back["code"], verifier)
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    handed(tokens["access_token"])
    assert tokens["patient"] == world.other_patient
    assert tokens["scope"] == "launch/patient patient/DocumentReference.rs"
    headers = bearer(tokens)
    inside = httpx.get(f"{world.fhir}/DocumentReference/{world.other_document}", headers=headers)
    assert inside.status_code == 200, inside.text
    outside = httpx.get(f"{world.fhir}/DocumentReference/{world.document}", headers=headers)
    assert outside.status_code in (403, 404)


def test_user_scopes_are_the_users_own_rights_and_no_more(world: World) -> None:
    tokens = launched(
        world,
        "user/DocumentReference.rs",
        who="personnel",
        identifier=world.hpr,
        unit=as_organisation_number(UNIT),
    )
    assert tokens["scope"] == "user/DocumentReference.rs" and "patient" not in tokens
    headers = bearer(tokens)
    for document in (world.document, world.other_document):  # both patients are theirs
        assert httpx.get(f"{world.fhir}/DocumentReference/{document}", headers=headers).is_success
    # user/DocumentReference: nothing of another type
    assert httpx.get(f"{world.fhir}/Patient/{world.patient}", headers=headers).status_code in (
        403,
        404,
    )
    assert httpx.get(f"{world.fhir}/Patient/{world.patient}", headers=world.gp).is_success


# -- SMART Backend Services -----


class _Jwks(BaseHTTPRequestHandler):
    document = b""
    fetched = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).fetched += 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[tuple[str, RSAKey]]:
    key = RSAKey.generate_key(2048, parameters={"kid": "backend-1"}, private=True)
    _Jwks.document = json.dumps({"keys": [key.as_dict(private=False)]}).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key
    finally:
        server.shutdown()


def test_backend_services_authenticate_with_a_registered_jwks_uri(
    world: World, jwks_server: tuple[str, RSAKey]
) -> None:
    jwks_uri, key = jwks_server
    client_id = new_app(
        world.admin,
        world.identity,
        kind="confidential",
        jwks_uri=jwks_uri,
        redirect_uris=[],
        scopes=["system/DocumentReference.rs"],
    )
    token_endpoint = world.platform.endpoints["identity"]["token_endpoint"]

    def assertion(lifetime: int = 240, jti: str | None = None, aud: str = token_endpoint) -> str:
        now = int(time.time())
        payload = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + lifetime,
                   "jti": jti or uuid.uuid4().hex}  # fmt: skip
        return handed(jwt.encode({"alg": "RS256", "kid": "backend-1"}, payload, key))

    def ask(signed: str, scope: str = "system/DocumentReference.rs") -> httpx.Response:
        return world.platform.token_response(
            {"grant_type": "client_credentials", "scope": scope,
             "client_assertion_type": JWT_BEARER, "client_assertion": signed}
        )  # fmt: skip

    jti = uuid.uuid4().hex
    issued = ask(assertion(jti=jti))
    assert issued.status_code == 200, issued.text
    assert _Jwks.fetched >= 1
    tokens = issued.json()
    handed(tokens["access_token"])
    assert tokens["scope"] == "system/DocumentReference.rs"
    headers = bearer(tokens)
    assert httpx.get(f"{world.fhir}/DocumentReference/{world.document}", headers=headers).is_success
    other_type = httpx.get(f"{world.fhir}/Patient/{world.patient}", headers=headers)
    assert other_type.status_code in (403, 404)
    # a system/ scope the app may not have is not granted; more than that, nothing
    narrowed = ask(assertion(), "system/DocumentReference.r system/Observation.rs")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "system/DocumentReference.r"
    handed(narrowed.json()["access_token"])
    assert ask(assertion(), "system/Observation.rs").json()["error"] == "invalid_scope"
    for refused in (
        assertion(jti=jti),  # a jti once
        assertion(lifetime=600),  # more than five minutes
        assertion(aud="https://elsewhere.example/token"),
    ):
        answer = ask(refused)
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


# -- the demo app, and bad input -----


def test_the_demo_app_launches_and_reads_the_patients_documents(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.smart_app import Launched, main

    recorded: list[str] = []

    def record_a_document(_: Launched) -> None:
        """The GP records a document for the patient once the app is subscribed."""
        created = httpx.post(
            f"{world.fhir}/DocumentReference",
            json=document_reference(world.patient, "Ny epikrise."),
            headers={**world.gp, "content-type": "application/fhir+json"},
            timeout=10.0,
        )
        assert created.status_code == 201, created.text
        recorded.append(created.json()["id"])

    launched_app = main(
        ["--fhir-base", world.fhir, "--client-id", world.app, "--redirect-uri", REDIRECT,
         "--national-id", world.patient, "--wait", "60"],
        on_subscribed=record_a_document,
    )  # fmt: skip
    handed(launched_app.token["access_token"])
    handed(launched_app.token["refresh_token"])
    printed = capsys.readouterr().out
    assert "granted scopes: launch/patient openid fhirUser offline_access" in printed
    assert "patient/DocumentReference.rs" in printed
    assert f"DocumentReference {world.document}" in printed
    assert world.other_document not in printed
    # subscribed, told of the new document (id-only, signed), nothing about the other patient
    assert "handshake signed: True" in printed
    (new_document,) = recorded
    assert f"notification: DocumentReference/{new_document} (signed: True)" in printed, printed
    assert world.other_patient not in printed


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/authorize", {"params": {"client_id": "\u00e6" * 300}}),
        ("GET", "/authorize", {"params": {"client_id": "x", "redirect_uri": "%%%"}}),
        ("GET", "/authorize/callback", {"params": {"request": "x", "id_token": "a.b.c"}}),
        ("GET", "/authorize/callback", {"params": {"request": "x" * 5000}}),
        ("POST", "/token", {"data": {"grant_type": "authorization_code", "code": "x"}}),
        ("POST", "/token", {"data": {"grant_type": "refresh_token", "client_id": "x"}}),
        ("POST", "/token", {"data": {"grant_type": "refresh_token", "client_assertion": "a"}}),
        ("POST", "/launch", {"json": {"patient": "../x"}}),
        ("GET", "/authorize/patient", {"params": {"pick": "<script>"}}),
        ("POST", "/authorize/patient", {"data": {"pick": "x" * 40, "patient": "1"}}),
        ("POST", "/authorize/patient", {"json": {"pick": "x"}}),
        ("POST", "/apps", {"json": {"client_id": "x", "jwks": {"keys": "no"}}}),
        ("POST", "/apps", {"json": [1, 2]}),
    ],
)
def test_bad_input_is_a_4xx(
    world: World, platform: Platform, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    ehr = gp_headers(platform, world.hpr, unit=UNIT, audience="identity")
    headers = world.admin if path == "/apps" else ehr
    answer = httpx.request(method, f"{world.identity}{path}", headers=headers, **kwargs)
    assert 400 <= answer.status_code < 500, answer.text
