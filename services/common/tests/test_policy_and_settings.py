from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from akson_common.auth import Principal
from akson_common.errors import NotFound, ServiceUnavailable
from akson_common.policy import (
    Decision,
    PolicyContext,
    PolicyEnforcementPoint,
    PolicyUnavailable,
    ResourceRef,
    decide_visible,
)
from akson_common.settings import ServiceSettings


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_an_unreachable_policy_engine_means_deny() -> None:
    pep = PolicyEnforcementPoint(f"http://127.0.0.1:{unused_port()}", timeout_seconds=0.3)
    await pep.start()
    try:
        subject = Principal(id="hpr:1", kind="practitioner", hpr_number="1", profession="LE")
        resource = ResourceRef(type="DocumentReference", patient="1", category="general")
        with pytest.raises(PolicyUnavailable) as raised:
            await pep.decide(subject, "read", resource, PolicyContext())
        assert raised.value.status == 503 and isinstance(raised.value, ServiceUnavailable)
        with pytest.raises(PolicyUnavailable):
            await pep.enforce(subject, "read", resource, PolicyContext())
        # an unknown record is still asked about: no OPA is a 503, not a 404
        with pytest.raises(PolicyUnavailable):
            await pep.visible(
                subject, "read", resource, PolicyContext(), known=False, not_found=NotFound()
            )
    finally:
        await pep.close()


@pytest.mark.parametrize("environment", ["production", "test"])
def test_outside_development_placeholder_secrets_are_refused(environment: str) -> None:
    with pytest.raises(ValidationError, match="dapr_api_token"):
        ServiceSettings(
            service_name="journal",
            environment=environment,
            dapr_api_token="changeme",
            app_api_token="x" * 32,
            jwks_url="https://identity/jwks",
        )


def test_development_accepts_missing_secrets_and_derives_names() -> None:
    settings = ServiceSettings(service_name="journal", environment="development")
    assert settings.mongo_database == "akson_journal"
    assert settings.jwt_audience == "journal"


async def test_any_policy_package_is_asked_fail_closed() -> None:
    """``decide_at`` (e.g. akson.export) keeps the enforcement point's semantics: no answer is
    a typed PolicyUnavailable the caller can tell from a refusal."""
    pep = PolicyEnforcementPoint(f"http://127.0.0.1:{unused_port()}", timeout_seconds=0.3)
    await pep.start()
    try:
        with pytest.raises(PolicyUnavailable):
            await pep.decide_at("akson.export", "decision", {"recipient": "payroll"})
    finally:
        await pep.close()


@pytest.mark.parametrize("missing", ["partition_key_secret", "opa_token"])
def test_outside_development_the_partition_key_and_opa_token_are_required(missing: str) -> None:
    secrets = {
        "service_name": "journal",
        "environment": "production",
        "jwks_url": "https://identity/jwks",
        "dapr_api_token": "d" * 32,
        "app_api_token": "a" * 32,
        "partition_key_secret": "p" * 32,
        "opa_token": "o" * 32,
    }
    ServiceSettings.model_validate(secrets)
    with pytest.raises(ValidationError, match=missing):
        ServiceSettings.model_validate({**secrets, missing: ""})


@pytest.mark.parametrize(
    ("known", "allow", "visible"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
async def test_a_record_is_visible_only_when_known_and_allowed(
    known: bool, allow: bool, visible: bool
) -> None:
    """Refused and unknown read alike (404); the policy is asked either way."""
    asked: list[ResourceRef] = []

    async def decide(resource: ResourceRef, context: PolicyContext) -> Decision:
        asked.append(resource)
        return Decision(allow=allow, reasons=("care_relation",) if allow else ("no_legal_basis",))

    resource = ResourceRef(type="DocumentReference", id="d-1")
    missing = NotFound("DocumentReference/d-1 is not known")
    if visible:
        decision = await decide_visible(
            decide, resource, PolicyContext(), known=known, not_found=missing
        )
        assert decision.allow
    else:
        with pytest.raises(NotFound) as raised:
            await decide_visible(decide, resource, PolicyContext(), known=known, not_found=missing)
        assert raised.value is missing
    assert asked == [resource]
