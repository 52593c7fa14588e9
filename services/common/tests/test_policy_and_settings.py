from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from akson_common.auth import Principal
from akson_common.errors import ServiceUnavailable
from akson_common.policy import PolicyContext, PolicyEnforcementPoint, ResourceRef
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
        decision = await pep.decide(subject, "read", resource, PolicyContext())
        assert decision.allow is False
        assert decision.reasons == ("policy_unavailable",)
        with pytest.raises(ServiceUnavailable):
            await pep.enforce(subject, "read", resource, PolicyContext())
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
    a deny the caller can tell from a refusal (``policy_unavailable``)."""
    pep = PolicyEnforcementPoint(f"http://127.0.0.1:{unused_port()}", timeout_seconds=0.3)
    await pep.start()
    try:
        decision = await pep.decide_at("akson.export", "decision", {"recipient": "payroll"})
        assert decision.allow is False
        assert decision.reasons == ("policy_unavailable",)
        assert decision.violations == ()
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
