"""The token endpoint's OAuth errors (RFC 6749 §5.2), for requests refused before any lookup."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from identity.main import create_app
from identity.settings import IdentitySettings

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    # no lifespan: nothing here reaches the database, the sidecar or OPA
    settings = IdentitySettings(
        service_name="identity",
        environment="development",
        mongo_url="mongodb://127.0.0.1:1/",
        audiences=("journal",),
        jwt_issuer="https://identity.test",
    )
    return TestClient(create_app(settings))


def test_an_unknown_grant_type_is_unsupported(client: TestClient) -> None:
    answer = client.post("/token", content="grant_type=password&username=x", headers=FORM)
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"
    assert answer.headers["cache-control"] == "no-store"


def test_client_credentials_without_a_client_assertion_is_an_invalid_client(
    client: TestClient,
) -> None:
    answer = client.post("/token", content="grant_type=client_credentials", headers=FORM)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_malformed_client_assertion_is_an_invalid_client(client: TestClient) -> None:
    body = (
        "grant_type=client_credentials&client_assertion=not.a.jwt&client_assertion_type="
        "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    )
    answer = client.post("/token", content=body, headers=FORM)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange", "invalid_request"),
        ("grant_type=password&grant_type=client_credentials", "invalid_request"),
        (
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a.b.c"
            "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=ledger",
            "invalid_target",
        ),
        (
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x"
            "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=journal",
            "invalid_grant",
        ),
    ],
    ids=["no subject token", "repeated parameter", "unknown audience", "not a JWT"],
)
def test_bad_requests_get_rfc6749_errors(client: TestClient, body: str, error: str) -> None:
    answer = client.post("/token", content=body, headers=FORM)
    assert answer.status_code == 400
    assert answer.json()["error"] == error
    assert "access_token" not in answer.text


def test_anything_but_a_form_is_a_problem(client: TestClient) -> None:
    answer = client.post("/token", json={"grant_type": "client_credentials"})
    assert answer.status_code == 415
    assert answer.headers["content-type"] == "application/problem+json"


def test_discovery_names_the_grants_and_private_key_jwt(client: TestClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["issuer"] == "https://identity.test"
    assert metadata["token_endpoint"] == "https://identity.test/token"
    assert metadata["authorization_endpoint"] == "https://identity.test/authorize"
    # confidential clients: private_key_jwt; public SMART apps: none (PKCE binds their code)
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "none"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        metadata["grant_types_supported"]
    )


def test_smart_configuration_lists_the_smart_2_capabilities(client: TestClient) -> None:
    smart = client.get("/.well-known/smart-configuration").json()
    assert smart["authorization_endpoint"] == "https://identity.test/authorize"
    assert smart["token_endpoint"] == "https://identity.test/token"
    assert {
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "client-confidential-asymmetric",
        "context-ehr-patient",
        "context-standalone-patient",
        "permission-v2",
        "permission-patient",
        "permission-user",
        "permission-offline",
        "sso-openid-connect",
    } <= set(smart["capabilities"])
    assert smart["code_challenge_methods_supported"] == ["S256"]
