"""FHIR R4 ``Consent`` views of directives, built and validated with fhir.resources' R4B models.

R4B is wire-compatible with R4 for Consent. The mapping:

- every kind: ``scope`` patient-privacy, ``category`` LOINC 59284-0 (patient consent) plus the
  directive kind (``urn:akson:consent-directive-kind``), ``status`` active or inactive
  (withdrawn), ``provision.period`` the directive's period, ``meta.versionId`` its version;
- ``block``: ``policyRule`` OPTOUT, ``provision.type`` deny, ``provision.actor`` the blocked
  practitioner, unit or organisation as information recipient (IRCP);
- ``reservation``: OPTOUT, deny, the reserved categories as ``provision.securityLabel`` (none =
  every category) and the scope as ``provision.purpose`` (``urn:akson:reservation-scope``);
- ``consent``: OPTIN, ``provision.type`` permit, actor the recipient organisation, the purpose
  (``urn:akson:sharing-purpose``) and the shared categories as security labels;
- ``device``: OPTIN, permit, ``provision.data`` the Device (welfare's registry id).

The free-text reason given by personnel is not part of the view.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent

from consent.models import Directive

HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORG_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
DIRECTIVE_SYSTEM = "urn:akson:consent-directive"
KIND_SYSTEM = "urn:akson:consent-directive-kind"
CATEGORY_SYSTEM = "urn:akson:category"
RESERVATION_SCOPE_SYSTEM = "urn:akson:reservation-scope"
PURPOSE_SYSTEM = "urn:akson:sharing-purpose"
SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def _period(directive: Directive) -> dict[str, str]:
    period = {"start": directive.period_start.isoformat()}
    if directive.period_end is not None:
        period["end"] = directive.period_end.isoformat()
    return period


def _recipient(reference: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
        "reference": reference,
    }


def _organisation(number: str) -> dict[str, Any]:
    return {
        "reference": f"Organization/{number}",
        "identifier": {"system": ORG_SYSTEM, "value": number},
    }


def _blocked(directive: Directive) -> dict[str, Any]:
    if directive.practitioner is not None:
        return {
            "reference": f"Practitioner/{directive.practitioner}",
            "identifier": {"system": HPR_SYSTEM, "value": directive.practitioner},
        }
    number = directive.unit or directive.organisation
    assert number is not None, "a block names exactly one target"
    return _organisation(number)


def _labels(categories: list[str]) -> list[dict[str, str]]:
    return [{"system": CATEGORY_SYSTEM, "code": category} for category in categories]


def _provision(directive: Directive) -> dict[str, Any]:
    provision: dict[str, Any] = {"period": _period(directive)}
    if directive.kind == "block":
        provision |= {"type": "deny", "actor": [_recipient(_blocked(directive))]}
    elif directive.kind == "reservation":
        provision["type"] = "deny"
        if directive.scope is not None:
            provision["purpose"] = [{"system": RESERVATION_SCOPE_SYSTEM, "code": directive.scope}]
    elif directive.kind == "device":
        provision["type"] = "permit"
        provision["data"] = [
            {"meaning": "related", "reference": {"reference": f"Device/{directive.device}"}}
        ]
    else:
        provision["type"] = "permit"
        if directive.recipient_organisation is not None:
            provision["actor"] = [_recipient(_organisation(directive.recipient_organisation))]
        if directive.purpose is not None:
            provision["purpose"] = [{"system": PURPOSE_SYSTEM, "code": directive.purpose}]
    if directive.categories:
        provision["securityLabel"] = _labels(directive.categories)
    return provision


def _performer(directive: Directive) -> dict[str, Any]:
    by = directive.registered_by
    if by.kind == "citizen" and by.id == directive.patient:
        return {"reference": f"Patient/{directive.patient}"}
    if by.hpr_number:
        return {"reference": f"Practitioner/{by.hpr_number}"}
    if by.organisation:
        return _organisation(by.organisation)
    return {"display": by.kind}


def _rule(directive: Directive) -> str:
    """A sharing or device consent opts in; blocks and reservations opt out."""
    return "OPTIN" if directive.kind in ("consent", "device") else "OPTOUT"


def consent_resource(directive: Directive) -> Consent:
    return Consent.model_validate(
        {
            "id": directive.id,
            "meta": {"versionId": str(directive.version)},
            "identifier": [{"system": DIRECTIVE_SYSTEM, "value": directive.id}],
            "status": "active" if directive.status == "active" else "inactive",
            "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
            "category": [
                {"coding": [{"system": LOINC, "code": "59284-0"}]},
                {"coding": [{"system": KIND_SYSTEM, "code": directive.kind}]},
            ],
            "patient": {"reference": f"Patient/{directive.patient}"},
            "dateTime": directive.registered_at.isoformat(),
            "performer": [_performer(directive)],
            "policyRule": {"coding": [{"system": ACT_CODE, "code": _rule(directive)}]},
            "provision": _provision(directive),
        }
    )


def searchset(directives: list[Directive], base_url: str) -> Bundle:
    return Bundle.model_validate(
        {
            "type": "searchset",
            "total": len(directives),
            "entry": [
                {
                    "fullUrl": f"{base_url}/fhir/R4/Consent/{d.id}",
                    "resource": consent_resource(d),
                    "search": {"mode": "match"},
                }
                for d in directives
            ],
        }
    )
