"""An audience on the authorization-code and refresh grants (a web app over the platform's own
APIs asks one token per service), and roles identity grants to named personnel."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from identity.service import OAuthError
from identity.settings import IdentitySettings
from identity.smart import AppLaunch


def settings(**changes: object) -> IdentitySettings:
    values: dict[str, object] = {
        "service_name": "identity",
        "environment": "development",
        "mongo_url": "mongodb://127.0.0.1:1/",
        "audiences": ("audit", "consent", "gateway"),
        "jwt_issuer": "https://identity.test",
        **changes,
    }
    return IdentitySettings.model_validate(values)


def launch(**changes: object) -> AppLaunch:
    tokens = SimpleNamespace(
        store=None, settings=settings(**changes), issuer="https://identity.test"
    )
    return AppLaunch(tokens)  # type: ignore[arg-type]


def test_without_an_audience_the_token_is_for_the_fhir_base_as_before() -> None:
    assert launch()._audience({"grant_type": "authorization_code"}) == "gateway"


def test_an_audience_names_one_platform_service() -> None:
    assert launch()._audience({"audience": "audit"}) == "audit"
    assert launch()._audience({"audience": "consent"}) == "consent"


def test_any_other_audience_is_an_invalid_target() -> None:
    for audience in ("", "journal", "https://evil.example", "audit consent"):
        with pytest.raises(OAuthError) as refused:
            launch()._audience({"audience": audience})
        assert refused.value.error == "invalid_target"


def test_personnel_roles_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AKSON_IDENTITY_PERSONNEL_ROLES", '{"9700006": ["auditor"]}')
    monkeypatch.setenv("AKSON_IDENTITY_ENVIRONMENT", "development")
    from akson_common.settings import settings_for

    read = settings_for(IdentitySettings, "identity")
    assert read.personnel_roles == {"9700006": ("auditor",)}
    assert settings().personnel_roles == {}
