"""The resource types the journal keeps, as one table: how to validate each, and where in it
the facts live that storage, search and access decisions need (patient, category, date,
status, type code).

Everything here works on the resource's JSON (after validation with fhir.resources' R4B
models, which are wire-compatible with R4 for these types), so one generic store and one set
of routes serve every type.

Representations (documented for clients):

- **category**: a coding with system ``urn:akson:category`` (e.g. ``general``,
  ``mental_health``, ``sexual_health``, ``child_welfare_related``, ``dental``, ``visit``).
  Types with a fixed category ignore it: AllergyIntolerance and Flag are ``critical_info``,
  MedicationStatement and MedicationAdministration ``medication``, Encounter ``visit``;
  DiagnosticReport and Observation are ``lab_result`` unless coded ``radiology``
  (``urn:akson:category|radiology`` or the HL7 v2-0074 section ``RAD``) or, an Observation,
  ``welfare`` (``urn:akson:category|welfare``: a welfare-technology device's measurement).
- **sensitivity**: ``sensitive`` when the category is sensitive by nature (mental health,
  sexual health, child-welfare related), or a ``meta.security`` label (or, on a
  DocumentReference, a ``securityLabel``) is ``urn:akson:security|sensitive`` or the v3
  confidentiality ``R``/``V``; else ``normal``.
- **withheld from patient**: ``meta.security`` label ``urn:akson:security|withheld-from-patient``
  (meta.security has an extensible binding, so a local code is valid FHIR).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from akson_common.errors import BadRequest, Problem, Unprocessable
from akson_common.identifiers import is_national_id

CATEGORY_SYSTEM = "urn:akson:category"
SECURITY_SYSTEM = "urn:akson:security"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SECTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0074"
WITHHELD = "withheld-from-patient"
SENSITIVE = "sensitive"
ENTERED_IN_ERROR = "entered-in-error"
SENSITIVE_CATEGORIES = frozenset({"mental_health", "sexual_health", "child_welfare_related"})
ATTACHMENT_TYPES = frozenset({"text/plain", "text/markdown", "application/pdf"})

Json = dict[str, Any]


class ContentTooLarge(Problem):
    """The submitted resource is beyond the configured limit."""

    status, title, type_slug = 413, "Content Too Large", "too-large"


def _codings(concepts: Any) -> list[Json]:
    if isinstance(concepts, dict):
        concepts = [concepts]
    codings: list[Json] = []
    for concept in concepts or []:
        if isinstance(concept, dict):
            codings.extend(c for c in concept.get("coding") or [] if isinstance(c, dict))
    return codings


def _first_code(concepts: Any) -> str | None:
    for coding in _codings(concepts):
        if coding.get("code"):
            return str(coding["code"])
    return None


def _path(resource: Json, *names: str) -> Any:
    value: Any = resource
    for name in names:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def category_code(resource: Json, key: str = "category") -> str | None:
    for coding in _codings(resource.get(key)):
        if coding.get("system") == CATEGORY_SYSTEM and coding.get("code"):
            return str(coding["code"])
    return None


def _result_category(resource: Json) -> str:
    if category_code(resource) == "radiology":
        return "radiology"
    for coding in _codings(resource.get("category")):
        if coding.get("system") == SECTION_SYSTEM and coding.get("code") in {"RAD", "RX"}:
            return "radiology"
    return "lab_result"


def _observation_category(resource: Json) -> str:
    if category_code(resource) == "welfare":
        return "welfare"
    return _result_category(resource)


@dataclass(frozen=True)
class Kind:
    """One resource type: its model and where its facts are."""

    name: str
    model: type[Resource]
    patient_field: str
    category: Callable[[Json], str]
    dates: tuple[tuple[str, ...], ...]
    status: Callable[[Json], str | None]
    type_code: Callable[[Json], str | None]
    mark_entered_in_error: Callable[[Json], None]
    # which statuses make a resource "current" for the patient summary
    current_statuses: frozenset[str] = field(default_factory=frozenset)

    def patient(self, resource: Json) -> str:
        reference = _path(resource, self.patient_field, "reference")
        patient = reference.removeprefix("Patient/") if isinstance(reference, str) else ""
        if not reference or not reference.startswith("Patient/") or not is_national_id(patient):
            raise Unprocessable(
                f"{self.patient_field} must reference Patient/<national id>",
                errors=[{"loc": [self.patient_field, "reference"], "msg": "not a patient"}],
            )
        return patient

    def date(self, resource: Json) -> str | None:
        for path in self.dates:
            value = _path(resource, *path)
            if isinstance(value, str) and value:
                return value
        return None


def _status(resource: Json) -> str | None:
    value = resource.get("status")
    return str(value) if value else None


def _set_status(resource: Json) -> None:
    resource["status"] = ENTERED_IN_ERROR


def _allergy_status(resource: Json) -> str | None:
    verification = _first_code(resource.get("verificationStatus"))
    if verification == ENTERED_IN_ERROR:
        return ENTERED_IN_ERROR
    return _first_code(resource.get("clinicalStatus")) or "active"


def _allergy_entered_in_error(resource: Json) -> None:
    resource["verificationStatus"] = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "code": ENTERED_IN_ERROR,
            }
        ]
    }
    # clinicalStatus SHALL NOT be present when the verification status is entered-in-error
    resource.pop("clinicalStatus", None)


def _document_category(resource: Json) -> str:
    return category_code(resource) or "general"


def _medication_code(resource: Json) -> str | None:
    return _first_code(resource.get("medicationCodeableConcept"))


def _encounter_type(resource: Json) -> str | None:
    return _first_code(resource.get("type")) or _path(resource, "class", "code")


def _code_of(key: str) -> Callable[[Json], str | None]:
    return lambda resource: _first_code(resource.get(key))


def _fixed(category: str) -> Callable[[Json], str]:
    return lambda resource: category


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "DocumentReference",
            DocumentReference,
            "subject",
            _document_category,
            (("date",), ("context", "period", "start")),
            _status,
            _code_of("type"),
            _set_status,
            frozenset({"current"}),
        ),
        Kind(
            "AllergyIntolerance",
            AllergyIntolerance,
            "patient",
            _fixed("critical_info"),
            (("recordedDate",), ("onsetDateTime",)),
            _allergy_status,
            _code_of("code"),
            _allergy_entered_in_error,
            frozenset({"active"}),
        ),
        Kind(
            "Flag",
            Flag,
            "subject",
            _fixed("critical_info"),
            (("period", "start"),),
            _status,
            _code_of("code"),
            _set_status,
            frozenset({"active"}),
        ),
        Kind(
            "MedicationStatement",
            MedicationStatement,
            "subject",
            _fixed("medication"),
            (("effectiveDateTime",), ("effectivePeriod", "start"), ("dateAsserted",)),
            _status,
            _medication_code,
            _set_status,
            frozenset({"active"}),
        ),
        Kind(
            # a dose given, taken or missed (``not-done``): e.g. a medicine dispenser's report
            "MedicationAdministration",
            MedicationAdministration,
            "subject",
            _fixed("medication"),
            (("effectiveDateTime",), ("effectivePeriod", "start")),
            _status,
            _medication_code,
            _set_status,
            frozenset({"completed", "not-done", "in-progress"}),
        ),
        Kind(
            "DiagnosticReport",
            DiagnosticReport,
            "subject",
            _result_category,
            (("effectiveDateTime",), ("effectivePeriod", "start"), ("issued",)),
            _status,
            _code_of("code"),
            _set_status,
            frozenset({"final", "amended", "corrected", "appended", "preliminary"}),
        ),
        Kind(
            "Observation",
            Observation,
            "subject",
            _observation_category,
            (("effectiveDateTime",), ("effectivePeriod", "start"), ("issued",)),
            _status,
            _code_of("code"),
            _set_status,
            frozenset({"final", "amended", "corrected", "preliminary"}),
        ),
        Kind(
            "Encounter",
            Encounter,
            "subject",
            _fixed("visit"),
            (("period", "start"),),
            _status,
            _encounter_type,
            _set_status,
            frozenset({"finished"}),
        ),
    )
}


def _security_codes(resource: Json) -> set[tuple[str | None, str | None]]:
    labels = list(_path(resource, "meta", "security") or [])
    for concept in resource.get("securityLabel") or []:
        if isinstance(concept, dict):
            labels.extend(concept.get("coding") or [])
    return {(c.get("system"), c.get("code")) for c in labels if isinstance(c, dict)}


def sensitivity_of(resource: Json, category: str) -> str:
    if category in SENSITIVE_CATEGORIES:
        return SENSITIVE
    labels = _security_codes(resource)
    marked = {
        (SECURITY_SYSTEM, SENSITIVE),
        (CONFIDENTIALITY_SYSTEM, "R"),
        (CONFIDENTIALITY_SYSTEM, "V"),
    }
    return SENSITIVE if labels & marked else "normal"


def withheld_from_patient(resource: Json) -> bool:
    return (SECURITY_SYSTEM, WITHHELD) in _security_codes(resource)


def normalise_instant(value: str | None) -> str | None:
    """A FHIR date/dateTime/instant as a sortable UTC ``YYYY-MM-DDTHH:MM:SSZ`` (dates at 00:00)."""
    if not value:
        return None
    try:
        if len(value) == 4:
            moment = datetime(int(value), 1, 1, tzinfo=UTC)
        elif len(value) == 7:
            moment = datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
        elif len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Parsed:
    """A validated resource and the facts the journal keeps beside it."""

    kind: Kind
    resource: Json
    patient: str
    category: str
    sensitivity: str
    withheld_from_patient: bool
    status: str | None
    date: str | None
    type_code: str | None


# Required bindings (FHIR R4) the R4B models take as plain strings: code elements by path, and
# CodeableConcepts whose codings in the value set's system must carry one of its codes.
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
REQUIRED_CODES: dict[str, dict[tuple[str, ...], frozenset[str]]] = {
    "DocumentReference": {
        ("status",): frozenset({"current", "superseded", ENTERED_IN_ERROR}),
        ("docStatus",): frozenset({"preliminary", "final", "amended", ENTERED_IN_ERROR}),
        ("relatesTo", "code"): frozenset({"replaces", "transforms", "signs", "appends"}),
    },
    "AllergyIntolerance": {
        ("type",): frozenset({"allergy", "intolerance"}),
        ("category",): frozenset({"food", "medication", "environment", "biologic"}),
        ("criticality",): frozenset({"low", "high", "unable-to-assess"}),
        ("reaction", "severity"): frozenset({"mild", "moderate", "severe"}),
    },
    "Flag": {("status",): frozenset({"active", "inactive", ENTERED_IN_ERROR})},
    "MedicationStatement": {
        ("status",): frozenset(
            {
                "active",
                "completed",
                ENTERED_IN_ERROR,
                "intended",
                "stopped",
                "on-hold",
                "unknown",
                "not-taken",
            }
        )
    },
    "MedicationAdministration": {
        ("status",): frozenset(
            {
                "in-progress",
                "not-done",
                "on-hold",
                "completed",
                ENTERED_IN_ERROR,
                "stopped",
                "unknown",
            }
        )
    },
    "DiagnosticReport": {
        ("status",): frozenset(
            {
                "registered",
                "partial",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "appended",
                "cancelled",
                ENTERED_IN_ERROR,
                "unknown",
            }
        )
    },
    "Observation": {
        ("status",): frozenset(
            {
                "registered",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                ENTERED_IN_ERROR,
                "unknown",
            }
        )
    },
    "Encounter": {
        ("status",): frozenset(
            {
                "planned",
                "arrived",
                "triaged",
                "in-progress",
                "onleave",
                "finished",
                "cancelled",
                ENTERED_IN_ERROR,
                "unknown",
            }
        )
    },
}
REQUIRED_CONCEPTS: dict[str, dict[str, tuple[str, frozenset[str]]]] = {
    "AllergyIntolerance": {
        "clinicalStatus": (ALLERGY_CLINICAL, frozenset({"active", "inactive", "resolved"})),
        "verificationStatus": (
            ALLERGY_VERIFICATION,
            frozenset({"unconfirmed", "confirmed", "refuted", ENTERED_IN_ERROR}),
        ),
    },
}


def _values_at(value: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value at ``path``, through lists (``relatesTo[*].code``)."""
    if not path:
        return value if isinstance(value, list) else [value]
    items = value if isinstance(value, list) else [value]
    found: list[Any] = []
    for item in items:
        if isinstance(item, dict) and path[0] in item:
            found.extend(_values_at(item[path[0]], path[1:]))
    return found


def check_required_bindings(kind: Kind, resource: Json) -> None:
    for path, allowed in REQUIRED_CODES.get(kind.name, {}).items():
        if any(value not in allowed for value in _values_at(resource, path)):
            raise Unprocessable(
                f"{'.'.join(path)} is not a code of its required value set",
                errors=[{"loc": list(path), "msg": "code not in the required value set"}],
            )
    for name, (system, allowed) in REQUIRED_CONCEPTS.get(kind.name, {}).items():
        concept = resource.get(name)
        if concept is None:
            continue
        # a coding without a system is read as the bound one (clients often leave it out)
        codes = [c.get("code") for c in _codings(concept) if c.get("system") in (system, None)]
        if not codes or any(code not in allowed for code in codes):
            raise Unprocessable(
                f"{name} must be coded from {system}",
                errors=[{"loc": [name], "msg": "code not in the required value set"}],
            )


def _check_contained(body: Json) -> None:
    contained = body.get("contained")
    if contained is None:
        return
    if not isinstance(contained, list):
        raise BadRequest(
            "contained must be a list of resources",
            errors=[{"loc": ["contained"], "msg": "not a list"}],
        )
    for index, resource in enumerate(contained):
        name = resource.get("resourceType") if isinstance(resource, dict) else None
        try:
            known = isinstance(name, str) and get_fhir_model_class(name) is not None
        except (ValueError, KeyError):
            known = False
        if not known:
            raise BadRequest(
                "a contained resource has no known FHIR R4 type",
                errors=[{"loc": ["contained", str(index), "resourceType"], "msg": "unknown"}],
            )


def _check_submitted_attachment_data(body: Json) -> None:
    """The submitted ``data`` as sent: the models turn some invalid base64 into ``""``."""
    for index, content in enumerate(body.get("content") or []):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict) or "data" not in attachment:
            continue
        data = attachment["data"]
        where = ["content", str(index), "attachment", "data"]
        try:
            if not isinstance(data, str) or not data:
                raise ValueError("empty")
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise Unprocessable(
                "attachment data is not base64",
                errors=[{"loc": where, "msg": "not base64"}],
            ) from None


def validation_errors(error: ValidationError) -> list[Json]:
    # Locations only: the rejected content may be health data.
    return [{"loc": [str(p) for p in e["loc"]], "msg": e["type"]} for e in error.errors()]


def parse(kind: Kind, body: Any) -> Parsed:
    """Validate a submitted resource of ``kind`` and extract its facts."""
    if not isinstance(body, dict) or body.get("resourceType") != kind.name:
        raise Unprocessable(
            f"resourceType must be {kind.name}",
            errors=[{"loc": ["resourceType"], "msg": "wrong resource type"}],
        )
    _check_contained(body)
    if kind.name == "DocumentReference":
        _check_submitted_attachment_data(body)
    try:
        model = kind.model.model_validate(body)
    except ValidationError as error:
        raise Unprocessable(f"not a valid {kind.name}", errors=validation_errors(error)) from None
    except (KeyError, TypeError, ValueError):
        # the models raise these for shapes they cannot even read (e.g. a nested unknown type)
        raise BadRequest(f"not a readable {kind.name}") from None
    resource: Json = model.model_dump(mode="json", exclude_none=True)
    check_required_bindings(kind, resource)
    patient = kind.patient(resource)
    if kind.name == "DocumentReference":
        _check_attachments(resource)
    category = kind.category(resource)
    return Parsed(
        kind=kind,
        resource=resource,
        patient=patient,
        category=category,
        sensitivity=sensitivity_of(resource, category),
        withheld_from_patient=withheld_from_patient(resource),
        status=kind.status(resource),
        date=normalise_instant(kind.date(resource)),
        type_code=kind.type_code(resource),
    )


def _check_attachments(resource: Json) -> None:
    """Inline text or a PDF, carried in the attachment itself (no external URLs)."""
    for index, content in enumerate(resource.get("content") or []):
        attachment = content.get("attachment") or {}
        where = ["content", str(index), "attachment"]
        content_type = str(attachment.get("contentType", "")).split(";")[0].strip()
        if content_type not in ATTACHMENT_TYPES:
            raise Unprocessable(
                "attachments are text/plain, text/markdown or application/pdf",
                errors=[{"loc": [*where, "contentType"], "msg": "unsupported content type"}],
            )
        data = attachment.get("data")
        if data is None:
            raise Unprocessable(
                "attachments carry their data inline",
                errors=[{"loc": [*where, "data"], "msg": "missing"}],
            )
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise Unprocessable(
                "attachment data is not base64",
                errors=[{"loc": [*where, "data"], "msg": "not base64"}],
            ) from None
        if content_type == "application/pdf" and not raw.startswith(b"%PDF-"):
            raise Unprocessable(
                "the attachment is not a PDF",
                errors=[{"loc": [*where, "data"], "msg": "not a PDF"}],
            )


def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise ContentTooLarge(f"a resource may be at most {limit} bytes")
