"""The infrastructure's own APIs are locked (issue 13): OPA answers decisions to the enforcement
points' token only and takes no writes; the database refuses a client without credentials;
identity's private signing keys are not readable from its database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from pymongo import MongoClient
from pymongo.errors import OperationFailure
from stack import APP_ROLE, KEY_PUBLISH_LEAD_SECONDS, ROOT, storage_services

from akson_common.auth import token_header
from tests.integration.conftest import Platform, eventually

pytestmark = pytest.mark.integration

DECISION = "/v1/data/akson/authz/decision"
DECISION_INPUT = {
    "input": {
        "subject": {"id": "hpr:9144980", "kind": "practitioner", "hpr_number": "9144980"},
        "action": "read",
        "resource": {"type": "DocumentReference", "category": "general"},
        "context": {},
    }
}
WRITES: list[tuple[str, str, object]] = [
    ("PUT", "/v1/data/akson/authz", {"allow": True}),
    ("PATCH", "/v1/data", [{"op": "add", "path": "/akson/x", "value": 1}]),
    ("DELETE", "/v1/data/akson", None),
    ("PUT", "/v1/policies/evil", "package evil\n\nallow := true\n"),
    ("DELETE", "/v1/policies/policies/akson/authz/authz.rego", None),
]
READS: list[tuple[str, str, object]] = [
    ("GET", "/v1/policies", None),
    ("GET", f"{DECISION}?input.action=read", None),
    ("POST", "/v1/data/system/authz/allow", {"input": {}}),
    ("POST", "/v1/query", {"query": "data"}),
    ("GET", "/v1/config", None),
]


def opa_request(
    platform: Platform, method: str, path: str, body: object, token: str | None
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    if isinstance(body, str):
        content, headers["content-type"] = body.encode(), "text/plain"
        return httpx.request(method, f"{platform.endpoints['opa']['url']}{path}",
                             content=content, headers=headers, timeout=5.0)  # fmt: skip
    return httpx.request(method, f"{platform.endpoints['opa']['url']}{path}",
                         json=body, headers=headers, timeout=5.0)  # fmt: skip


def test_opa_answers_decisions_to_the_enforcement_points_token_only(platform: Platform) -> None:
    pep = platform.tokens["opa_token"]
    answered = opa_request(platform, "POST", DECISION, DECISION_INPUT, pep)
    assert answered.status_code == 200
    assert answered.json()["result"]["allow"] is False
    assert opa_request(platform, "GET", "/health", None, None).status_code == 200
    for token in (None, "not-the-token", platform.tokens["audit_upload_token"]):
        refused = opa_request(platform, "POST", DECISION, DECISION_INPUT, token)
        assert refused.status_code == 401, (token is None, refused.text)
        assert "result" not in refused.json()


@pytest.mark.parametrize("token_kind", ["none", "pep"])
def test_opa_takes_no_write_of_data_or_policy_and_shows_no_policy(
    platform: Platform, token_kind: str
) -> None:
    """OPA refuses with 401 (its authorizer's only refusal status), also with the PEP's token."""
    token = platform.tokens["opa_token"] if token_kind == "pep" else None
    for method, path, body in [*WRITES, *READS]:
        refused = opa_request(platform, method, path, body, token)
        assert refused.status_code == 401, (method, path, refused.text)
        assert refused.json()["code"] == "unauthorized"
    # nothing changed: the policy still decides, and denies
    after = opa_request(platform, "POST", DECISION, DECISION_INPUT, platform.tokens["opa_token"])
    assert after.json()["result"]["allow"] is False
    # OPA's decisions about its own API are not decision-logged: audit gets the decision only
    decisions = platform.db("audit").decisions
    eventually(lambda: decisions.find_one({"_id": after.json()["decision_id"]}), timeout=30)
    assert decisions.count_documents({"record.path": {"$regex": "^system"}}) == 0
    assert decisions.count_documents({"record.path": "akson/authz/decision"}) > 0


@pytest.mark.parametrize(
    "credentials",
    ["", f"{APP_ROLE}:wrong-password@", "akson:wrong-password@", "postgres:@"],
    ids=["none", "wrong-password", "superuser-guess", "os-user"],
)
def test_the_database_refuses_a_client_without_valid_credentials(
    platform: Platform, credentials: str
) -> None:
    address = platform.endpoints["mongo"]["address"]
    mechanism = "/?authMechanism=PLAIN" if credentials else "/"
    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://{credentials}{address}{mechanism}", serverSelectionTimeoutMS=3000
    )
    try:
        with pytest.raises(OperationFailure):
            client["akson_identity"].list_collection_names()
        with pytest.raises(OperationFailure):
            client["akson_journal"].documents.find_one({})
    finally:
        client.close()
    # the services' own role reads its database (the platform's client logs in as it)
    assert "signing_keys" in platform.db("identity").list_collection_names()


# -- identity's signing keys at rest ------------------------------------------------------------

PRIVATE_PARAMETERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def fields(value: Any) -> set[str]:
    """Every key of every object in ``value``, however deep."""
    if isinstance(value, dict):
        return set(value) | {name for inner in value.values() for name in fields(inner)}
    if isinstance(value, list):
        return {name for inner in value for name in fields(inner)}
    return set()


def stored_keys(platform: Platform) -> list[dict[str, Any]]:
    return list(platform.db("identity").signing_keys.find({}))


def verified_kid(platform: Platform) -> str:
    token = platform.client_token("journal", "Patient.read")
    published = httpx.get(platform.endpoints["identity"]["jwks_uri"], timeout=5.0).json()
    jwt.decode(token, KeySet.import_key_set(published), algorithms=["RS256"])
    kid: str = token_header(token)["kid"]
    return kid


def test_signing_keys_are_sealed_at_rest_and_still_sign_and_rotate(platform: Platform) -> None:
    before = stored_keys(platform)
    assert before
    for document in before:
        assert not fields(document) & PRIVATE_PARAMETERS, sorted(fields(document))
        assert set(document) == {"_id", "signs_from", "private_jwe"}
        assert document["private_jwe"].count(".") == 4  # a compact JWE
    assert verified_kid(platform) in {d["_id"] for d in before}

    env = {
        **os.environ,
        "AKSON_IDENTITY_ENVIRONMENT": "development",
        "AKSON_IDENTITY_MONGO_URL": platform.endpoints["mongo"]["url"],
        "AKSON_IDENTITY_KEY_ENCRYPTION_KEY_FILE": platform.stack.processes["identity-app"].env[
            "AKSON_IDENTITY_KEY_ENCRYPTION_KEY_FILE"
        ],
    }
    rotated = subprocess.run(
        [sys.executable, "-m", "identity.cli", "rotate", "--lead", str(KEY_PUBLISH_LEAD_SECONDS)],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    new_kid = rotated.stdout.split()[3].rstrip(":")
    after = {d["_id"]: d for d in stored_keys(platform)}
    assert not fields(after[new_kid]) & PRIVATE_PARAMETERS
    time.sleep(KEY_PUBLISH_LEAD_SECONDS)
    assert eventually(lambda: verified_kid(platform) == new_kid, timeout=10)
    # without the KEK the rotation cannot even start: no key is made in the clear
    env.pop("AKSON_IDENTITY_KEY_ENCRYPTION_KEY_FILE")
    refused = subprocess.run(
        [sys.executable, "-m", "identity.cli", "rotate"],
        env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0
    assert set(after) == {d["_id"] for d in stored_keys(platform)}


def test_a_key_stored_in_the_clear_before_sealing_is_sealed_when_identity_reads_it(
    platform: Platform,
) -> None:
    """An upgrade: keys written by an identity that did not seal them are sealed in place."""
    keys = platform.db("identity").signing_keys
    legacy = f"legacy-{int(time.time())}"
    # long retired (it signed before every current key): published by no JWKS, signs nothing
    keys.insert_one({
        "_id": legacy, "signs_from": 1.0,
        "private_jwk": RSAKey.generate_key(2048, private=True).as_dict(private=True),
    })  # fmt: skip
    try:

        def sealed() -> dict[str, Any] | None:
            httpx.get(platform.endpoints["identity"]["jwks_uri"], timeout=5.0)
            document: dict[str, Any] | None = keys.find_one({"_id": legacy})
            return document if document and "private_jwe" in document else None

        document = eventually(sealed, timeout=10)
        assert not fields(document) & PRIVATE_PARAMETERS
        assert verified_kid(platform) != legacy
    finally:
        keys.delete_one({"_id": legacy})


def test_writes_are_serialised_on_ferretdb_only(platform: Platform) -> None:
    """FerretDB v1 loses concurrent updates of one document, MongoDB does not: the in-process
    write locks are off by default (production) and the local runner turns them on."""
    from akson_common.settings import ServiceSettings

    assert ServiceSettings.model_fields["mongo_serialise_writes"].default is False
    for name in storage_services(platform.stack.services):
        env = platform.stack.processes[f"{name}-app"].env
        assert env[f"AKSON_{name.upper()}_MONGO_SERIALISE_WRITES"] == "true", name


def test_the_services_cannot_hold_all_of_ferretdbs_pool(platform: Platform) -> None:
    """A FerretDB v1 write holds one PostgreSQL connection while it takes a second: the
    services' clients together must not be able to ask for more than half its pool."""
    (url,) = [
        arg.split("=", 1)[1]
        for arg in platform.stack.processes["ferretdb"].argv
        if arg.startswith("--postgresql-url=")
    ]
    pool = int(url.split("pool_max_conns=", 1)[1].split("&", 1)[0])
    asked = sum(
        int(
            platform.stack.processes[f"{name}-app"].env[f"AKSON_{name.upper()}_MONGO_MAX_POOL_SIZE"]
        )
        for name in storage_services(platform.stack.services)
    )
    assert 2 * asked < pool, (asked, pool)
