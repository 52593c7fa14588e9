"""Consent logic without servers: directive shapes, reasons, withdrawal, events, FHIR views."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from pydantic import TypeAdapter, ValidationError

from akson_common.auth import Principal
from akson_common.errors import Conflict, Forbidden, PreconditionFailed, Unprocessable
from akson_common.identifiers import synthetic_national_id
from akson_common.settings import ServiceSettings
from consent import fhir
from consent.main import create_app
from consent.models import Directive, DirectiveIn, WithdrawalIn
from consent.service import changed_event, new_directive, policy_directives, withdrawn

PATIENT = synthetic_national_id(date(1980, 5, 17), 0)
OTHER_PATIENT = synthetic_national_id(date(1980, 5, 17), 1)
ORG = "974760673"
UNIT = "999000029"
AT = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
REASON = "Pasienten ringte og ba om sperring av fastlegen etter konflikt."
directive_in: TypeAdapter[Any] = TypeAdapter(DirectiveIn)

CITIZEN = Principal(id=PATIENT, kind="citizen")
GP = Principal(
    id="hpr:9144900", kind="practitioner", hpr_number="9144900", profession="LE",
    organisation=ORG, unit=UNIT,
)  # fmt: skip


def block(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "block",
        "patient": PATIENT,
        "practitioner": "4711",
        "period_start": "2026-01-01",
        **overrides,
    }


def reservation(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "reservation",
        "patient": PATIENT,
        "scope": "other_municipalities",
        "period_start": "2026-01-01",
        **overrides,
    }


def sharing(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "consent",
        "patient": PATIENT,
        "recipient_organisation": ORG,
        "purpose": "nav",
        "categories": ["general"],
        "period_start": "2026-01-01",
        "period_end": "2026-12-31",
        **overrides,
    }


def parsed(body: dict[str, Any]) -> Any:
    return directive_in.validate_python(body)


def invalid(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parsed(body)
    return str(caught.value)


def stored(body: dict[str, Any], principal: Principal = CITIZEN, **extra: Any) -> Directive:
    return new_directive(parsed({**body, **extra}), principal, AT)


# -- shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["practitioner", "unit", "organisation"])
def test_a_block_names_one_target(target: str) -> None:
    value = "4711" if target == "practitioner" else ORG
    body = {k: v for k, v in block().items() if k != "practitioner"}
    assert getattr(parsed({**body, target: value}), target) == value


def test_a_block_without_a_target_or_with_two_is_invalid() -> None:
    assert "exactly one" in invalid(block(practitioner=None))
    assert "exactly one" in invalid(block(unit=ORG))
    assert "exactly one" in invalid(block(practitioner=None, unit=ORG, organisation=ORG))


def test_a_block_refuses_fields_of_other_kinds_and_bad_identifiers() -> None:
    assert "scope" in invalid(block(scope="nav"))
    assert "recipient_organisation" in invalid(block(recipient_organisation=ORG))
    assert "HPR number" in invalid(block(practitioner="0123"))
    assert "organisation number" in invalid(block(practitioner=None, unit="974760674"))


def test_a_sharing_consent_needs_recipient_purpose_and_categories() -> None:
    consent = parsed(sharing())
    assert (consent.recipient_organisation, consent.purpose) == (ORG, "nav")
    for missing in ("recipient_organisation", "purpose", "categories"):
        body = {k: v for k, v in sharing().items() if k != missing}
        assert missing in invalid(body)
    assert "categories" in invalid(sharing(categories=[]))
    assert "organisation number" in invalid(sharing(recipient_organisation="974760674"))
    assert "purpose" in invalid(sharing(purpose="research"))
    assert "twice" in invalid(sharing(categories=["general", "general"]))
    assert "categories" in invalid(sharing(categories=["Fri tekst om pasienten"]))


def test_a_reservation_needs_a_scope_and_may_reserve_every_category() -> None:
    assert parsed(reservation()).categories == []
    assert parsed(reservation(scope="nav", categories=["mental_health"])).scope == "nav"
    assert "scope" in invalid({k: v for k, v in reservation().items() if k != "scope"})
    assert "scope" in invalid(reservation(scope="everyone"))
    assert "practitioner" in invalid(reservation(practitioner="4711"))


def test_the_period_must_not_end_before_it_starts_and_the_patient_must_be_valid() -> None:
    assert "ends before" in invalid(block(period_start="2026-02-01", period_end="2026-01-31"))
    assert parsed(block(period_start="2026-02-01", period_end="2026-02-01"))
    assert "control digits" in invalid(
        block(patient=PATIENT[:-1] + str((int(PATIENT[-1]) + 1) % 10))
    )
    assert "kind" in invalid({**block(), "kind": "wish"})


# -- registration, reasons and events ----------------------------------------------------------


def test_the_patient_registers_without_a_reason_personnel_only_with_one() -> None:
    own = stored(block())
    assert (own.version, own.status, own.registered_by.kind) == (1, "active", "citizen")
    with pytest.raises(Unprocessable):
        stored(block(), GP)
    with pytest.raises(Unprocessable):
        stored(block(), GP, reason="   ")
    # a citizen acting for someone else is on their behalf too (the policy decides if at all)
    with pytest.raises(Unprocessable):
        stored(block(patient=OTHER_PATIENT))
    on_behalf = stored(block(), GP, reason=REASON)
    assert on_behalf.registered_by.hpr_number == "9144900"
    assert on_behalf.registered_by.organisation == ORG
    assert on_behalf.history[0].reason == REASON


def test_the_event_carries_codes_and_identifiers_never_the_reason() -> None:
    directive = stored(sharing(), GP, reason=REASON)
    event = changed_event(directive).model_dump(mode="json")
    assert event == {
        "directive_id": directive.id,
        "version": 1,
        "patient": PATIENT,
        "kind": "consent",
        "status": "active",
        "practitioner": None,
        "unit": None,
        "organisation": None,
        "categories": ["general"],
        "scope": None,
        "recipient_organisation": ORG,
        "purpose": "nav",
        "device": None,
        "period_start": "2026-01-01",
        "period_end": "2026-12-31",
    }
    assert "ringte" not in str(policy_directives([directive], date(2026, 6, 1)))
    assert policy_directives([directive], date(2026, 6, 1))[0]["active"] is True
    assert policy_directives([directive], date(2027, 1, 1))[0]["active"] is False


def test_a_device_consent_names_the_device_and_opts_in_to_it() -> None:
    request = TypeAdapter(DirectiveIn).validate_python(
        {"kind": "device", "patient": PATIENT, "period_start": "2026-01-01", "device": "disp-1"}
    )
    directive = new_directive(request, CITIZEN, AT)
    assert changed_event(directive).device == "disp-1"
    consent = fhir.consent_resource(directive).model_dump(mode="json", exclude_none=True)
    assert consent["provision"]["type"] == "permit"
    assert consent["provision"]["data"][0]["reference"]["reference"] == "Device/disp-1"
    assert consent["policyRule"]["coding"][0]["code"] == "OPTIN"
    with pytest.raises(ValidationError):
        TypeAdapter(DirectiveIn).validate_python(
            {"kind": "device", "patient": PATIENT, "period_start": "2026-01-01", "device": "a b"}
        )


def test_withdrawal_bumps_the_version_keeps_the_directive_and_records_who() -> None:
    directive = stored(block(unit=ORG, practitioner=None))
    gone = withdrawn(directive, GP, WithdrawalIn(reason=REASON), 1, AT)
    assert (gone.version, gone.status, gone.id, gone.unit) == (2, "withdrawn", directive.id, ORG)
    assert [c.version for c in gone.history] == [1, 2]
    assert gone.history[1].by.hpr_number == "9144900" and gone.history[1].reason == REASON
    assert changed_event(gone).status == "withdrawn" and changed_event(gone).version == 2
    assert not gone.active_on(date(2026, 6, 1))
    own = withdrawn(directive, CITIZEN, WithdrawalIn(), None, AT)
    assert own.history[1].reason is None


def test_withdrawal_refuses_stale_versions_repeats_missing_reasons_and_self_unblocking() -> None:
    directive = stored(block())
    with pytest.raises(PreconditionFailed):
        withdrawn(directive, CITIZEN, WithdrawalIn(), 2, AT)
    with pytest.raises(Unprocessable):
        withdrawn(directive, GP, WithdrawalIn(), 1, AT)
    gone = withdrawn(directive, CITIZEN, WithdrawalIn(), 1, AT)
    with pytest.raises(Conflict):
        withdrawn(gone, CITIZEN, WithdrawalIn(), None, AT)
    blocked = Principal(id="hpr:4711", kind="practitioner", hpr_number="4711", profession="LE")
    with pytest.raises(Forbidden):
        withdrawn(directive, blocked, WithdrawalIn(reason=REASON), None, AT)


# -- FHIR ------------------------------------------------------------------------------------


def fhir_view(directive: Directive) -> dict[str, Any]:
    resource = fhir.consent_resource(directive).model_dump(mode="json", exclude_none=True)
    Consent.model_validate(resource)  # what we serve parses as a valid R4(B) Consent
    assert resource["patient"] == {"reference": f"Patient/{PATIENT}"}
    assert resource["scope"]["coding"][0]["code"] == "patient-privacy"
    return resource


def test_a_block_is_a_deny_provision_with_the_blocked_actor() -> None:
    resource = fhir_view(stored(block(), GP, reason=REASON))
    provision = resource["provision"]
    assert provision["type"] == "deny"
    assert provision["actor"][0]["reference"]["reference"] == "Practitioner/4711"
    assert provision["actor"][0]["role"]["coding"][0]["code"] == "IRCP"
    assert provision["period"] == {"start": "2026-01-01"}
    assert resource["policyRule"]["coding"][0]["code"] == "OPTOUT"
    assert resource["performer"] == [{"reference": "Practitioner/9144900"}]
    assert resource["status"] == "active" and resource["meta"]["versionId"] == "1"
    assert "ringte" not in str(resource)
    unit = fhir_view(stored(block(practitioner=None, unit=ORG)))
    assert unit["provision"]["actor"][0]["reference"]["reference"] == f"Organization/{ORG}"
    assert unit["performer"] == [{"reference": f"Patient/{PATIENT}"}]


def test_a_reservation_is_a_deny_provision_with_scope_and_categories() -> None:
    provision = fhir_view(stored(reservation(scope="child_welfare", categories=["general"])))[
        "provision"
    ]
    assert provision["type"] == "deny"
    assert provision["purpose"] == [
        {"system": fhir.RESERVATION_SCOPE_SYSTEM, "code": "child_welfare"}
    ]
    assert provision["securityLabel"] == [{"system": fhir.CATEGORY_SYSTEM, "code": "general"}]
    assert "securityLabel" not in fhir_view(stored(reservation()))["provision"]


def test_a_sharing_consent_permits_the_recipient_for_its_purpose_and_period() -> None:
    directive = stored(sharing(categories=["general", "mental_health"]))
    resource = fhir_view(withdrawn(directive, CITIZEN, WithdrawalIn(), None, AT))
    provision = resource["provision"]
    assert provision["type"] == "permit"
    assert provision["actor"][0]["reference"]["identifier"]["value"] == ORG
    assert provision["purpose"] == [{"system": fhir.PURPOSE_SYSTEM, "code": "nav"}]
    assert provision["period"] == {"start": "2026-01-01", "end": "2026-12-31"}
    assert [label["code"] for label in provision["securityLabel"]] == ["general", "mental_health"]
    assert resource["policyRule"]["coding"][0]["code"] == "OPTIN"
    assert resource["status"] == "inactive" and resource["meta"]["versionId"] == "2"


def test_the_search_bundle_is_a_valid_searchset() -> None:
    directives = [stored(block()), stored(reservation()), stored(sharing())]
    bundle = fhir.searchset(directives, "http://consent").model_dump(mode="json", exclude_none=True)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == 3
    assert bundle["entry"][0]["fullUrl"] == f"http://consent/fhir/R4/Consent/{directives[0].id}"
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"Consent"}


# -- the app's wiring (no servers: the lifespan is not entered) -------------------------------


def test_the_app_subscribes_to_master_data_and_serves_its_routes() -> None:
    settings = ServiceSettings(
        service_name="consent", environment="development", jwks_file="/nonexistent/jwks.json"
    )
    client = TestClient(create_app(settings))
    subscriptions = {s["topic"]: s for s in client.get("/dapr/subscribe").json()}
    assert set(subscriptions) == {
        "masterdata.person.changed",
        "masterdata.care_relation.changed",
        "identity.account.disabled",
    }
    person = subscriptions["masterdata.person.changed"]
    assert person["deadLetterTopic"] == "masterdata.person.changed.deadletter"
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/directives",
        "/directives/{directive_id}",
        "/directives/{directive_id}/withdraw",
        "/fhir/R4/Consent",
        "/fhir/R4/Consent/{directive_id}",
    } <= set(paths)
    assert client.get("/directives", params={"patient": PATIENT}).status_code == 401
