"""Journal HTTP API: FHIR R4 under /fhir/R4 (one set of routes for every resource type in
:data:`journal.kinds.KINDS`), plus supply use on visits. The policy is asked before data
leaves the store (see :mod:`journal.service`).

Errors under /fhir/R4 are OperationOutcome (``application/fhir+json``), elsewhere
problem+json. A resource the caller may not see reads exactly like an unknown one: 404.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response

from akson_common.app import state_dependency
from akson_common.auth import CurrentPrincipal
from akson_common.errors import (
    PROBLEM_JSON,
    PROTECTED_RESPONSES,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
)
from akson_common.etags import etag
from akson_common.fhir import FHIR_JSON
from akson_common.fhir_rest import lenient
from akson_common.identifiers import is_national_id
from journal.access import Caller
from journal.kinds import KINDS, Kind, check_size
from journal.search import (
    capability_statement,
    collection,
    encode_cursor,
    history_bundle,
    parse_search,
    searchset,
)
from journal.service import Journal as JournalService
from journal.service import Stored, SupplyUse, instant, now
from journal.settings import JournalSettings

router = APIRouter(tags=["fhir"])
PURPOSE_HEADER = "Akson-Purpose"
EMERGENCY_HEADER = "Akson-Emergency-Reason"
CODE = r"^[a-z][a-z0-9_]{0,63}$"


Journal = Annotated[JournalService, Depends(state_dependency("journal", JournalService))]
Settings = Annotated[
    JournalSettings, Depends(state_dependency("journal_settings", JournalSettings))
]

FHIR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **{
        code: {**answer, "content": {FHIR_JSON: {}}} for code, answer in PROTECTED_RESPONSES.items()
    },
    404: {
        "description": "Unknown, or not yours to see (the same answer)",
        "content": {FHIR_JSON: {}},
    },
}
BODY = {
    "requestBody": {
        "required": True,
        "content": {FHIR_JSON: {"schema": {"type": "object"}}},
    }
}


async def caller(
    principal: CurrentPrincipal,
    purpose: Annotated[
        str,
        Header(
            alias=PURPOSE_HEADER,
            pattern=CODE,
            description="Why the data is needed: treatment (default), nav, child_welfare, …",
        ),
    ] = "treatment",
    emergency_reason: Annotated[
        str | None,
        Header(
            alias=EMERGENCY_HEADER,
            pattern=CODE,
            description=(
                "Break-glass: a coded reason (e.g. life_threatening, unconscious_patient, "
                "acute_care_no_relation). Granted access is logged, the patient notified and "
                "the access reviewed."
            ),
        ),
    ] = None,
) -> Caller:
    return Caller(principal, purpose, emergency_reason)


CallerDep = Annotated[Caller, Depends(caller)]


async def kind_of(resource_type: Annotated[str, Path(description=", ".join(KINDS))]) -> Kind:
    kind = KINDS.get(resource_type)
    if kind is None:
        raise NotFound(f"this server keeps no {resource_type[:40]!r} resources")
    return kind


KindDep = Annotated[Kind, Depends(kind_of)]


async def fhir_body(request: Request, settings: Settings) -> Any:
    """The submitted resource: JSON, at most ``max_resource_bytes`` (413 beyond)."""
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media not in {FHIR_JSON, "application/json"}:
        raise UnsupportedMediaType(f"send {FHIR_JSON}")
    length = request.headers.get("content-length", "")
    if length.isdigit():
        check_size(int(length), settings.max_resource_bytes)
    raw = await request.body()
    check_size(len(raw), settings.max_resource_bytes)
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not JSON") from None


FhirBody = Annotated[Any, Depends(fhir_body)]


def base_url(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/fhir/R4"


def fhir(
    resource: dict[str, Any], *, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(resource, status_code=status_code, media_type=FHIR_JSON, headers=headers)


def versioned(stored: Stored, *, status_code: int = 200, location: bool = False) -> JSONResponse:
    resource = stored.resource
    headers = {
        "ETag": etag(stored.version),
        "Last-Modified": resource["meta"]["lastUpdated"],
    }
    if location:
        headers["Location"] = (
            f"/fhir/R4/{resource['resourceType']}/{resource['id']}/_history/{stored.version}"
        )
    if not stored.readable:
        # a response body is a read: the version, not the content
        return fhir(
            written_outcome(resource, stored.version), status_code=status_code, headers=headers
        )
    return fhir(resource, status_code=status_code, headers=headers)


def written_outcome(resource: dict[str, Any], version: int) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": (
                    f"{resource['resourceType']}/{resource['id']} version {version} recorded"
                ),
            }
        ],
    }


async def prefer_return(
    prefer: Annotated[
        str | None,
        Header(
            alias="Prefer",
            max_length=200,
            description=(
                "return=representation (default: the resource, if the caller may read it; "
                "else an OperationOutcome), return=OperationOutcome or return=minimal"
            ),
        ),
    ] = None,
) -> str:
    """What a write answers (RFC 7240, FHIR's ``Prefer: return=``)."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "return":
            return value.strip().strip('"')
    return "representation"


PreferReturn = Annotated[str, Depends(prefer_return)]


def written(
    stored: Stored, preference: str, *, status_code: int = 200, location: bool = False
) -> Response:
    """The answer to a write: the resource only when the caller read it back (``readable``)."""
    if preference == "OperationOutcome":
        stored = Stored(stored.resource, stored.version, readable=False)
    response = versioned(stored, status_code=status_code, location=location)
    if preference == "minimal":
        return Response(status_code=status_code, headers=_metadata(response))
    return response


def _metadata(response: Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower() in {"etag", "last-modified", "location"}
    }


# -- capabilities and the patient summary (before the generic routes) ------------------------


@router.get("/fhir/R4/metadata")
async def capabilities(request: Request) -> JSONResponse:
    """The CapabilityStatement: FHIR R4 (4.0.1), served from fhir.resources' R4B models,
    which are wire-compatible with R4 for every type listed."""
    return fhir(capability_statement(base_url(request), instant(now())))


@router.get("/fhir/R4/Patient/{patient}/$summary", responses=FHIR_RESPONSES)
async def patient_summary(
    patient: str, request: Request, who: CallerDep, journal: Journal
) -> JSONResponse:
    """Critical information, current medications, latest documents and results, each entry
    decided by the policy like any read (a Bundle of type collection)."""
    if not is_national_id(patient):
        raise BadRequest("not a national identity number")
    entries = await journal.summary(who, patient)
    return fhir(collection(base_url(request), entries, timestamp=instant(now())))


# -- the generic routes --------------------------------------------------------------------


@router.post(
    "/fhir/R4/{resource_type}/$validate",
    responses={**FHIR_RESPONSES, 413: {"description": "Too large"}},
    openapi_extra=BODY,
)
async def validate(
    kind: KindDep,
    body: FhirBody,
    who: CallerDep,
    journal: Journal,
    mode: Annotated[
        Literal["create", "update"],
        Query(description="create (default), or update of the resource's id"),
    ] = "create",
) -> JSONResponse:
    """Whether the resource is valid and the caller may write it (the policy is asked as for
    the write; nothing is stored): 200 with an OperationOutcome, else the write's own error.
    The gateway validates every entry of a transaction with it before applying any."""
    resource_id = None
    if mode == "update":
        resource_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(resource_id, str) or not resource_id:
            raise BadRequest("mode=update validates a resource with its id")
    await journal.validate(who, kind, body, resource_id=resource_id)
    return fhir(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": "valid"}],
        }
    )


@router.post(
    "/fhir/R4/{resource_type}",
    status_code=status.HTTP_201_CREATED,
    responses={**FHIR_RESPONSES, 413: {"description": "Too large"}},
    openapi_extra=BODY,
)
async def create(
    kind: KindDep,
    body: FhirBody,
    who: CallerDep,
    journal: Journal,
    preference: PreferReturn,
    if_none_exist: Annotated[
        str | None,
        Header(
            alias="If-None-Exist",
            max_length=1000,
            description="Conditional create: search parameters (patient=...&_id=...)",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=r"^[A-Za-z0-9._:\-]{1,128}$",
            description=(
                "A writer's key for this create: a retry with the same key (after a lost "
                "answer) makes nothing new and answers 200 with what the first one made"
            ),
        ),
    ] = None,
) -> Response:
    """Create (201, Location ``[type]/[id]``, ETag ``W/"1"``). The writer's HPR
    number, unit, organisation and municipality (from the token) are recorded with it. The
    body is the resource if the writer may read it (a write-only client gets an
    OperationOutcome; see ``Prefer``). With ``If-None-Exist``: when one resource the caller
    may see matches, nothing is created (200, that resource); two or more: 412. With
    ``Idempotency-Key``: the writer's second create with the key answers 200 with the first."""
    if if_none_exist is not None:
        existing = await journal.match(who, kind, parse_search(parse_qsl(if_none_exist)))
        if existing is not None:
            return written(existing, preference, location=True)
    stored = await journal.create(
        who, kind, body, read_back=preference != "minimal", idempotency_key=idempotency_key
    )
    response = written(
        stored, preference, status_code=201 if stored.created else 200, location=True
    )
    # Location names the resource itself here (its version is in the ETag; clients of this
    # base parse the id from it); the platform's FHIR base (the gateway) adds the version
    response.headers["Location"] = f"/fhir/R4/{kind.name}/{stored.resource['id']}"
    return response


@router.get("/fhir/R4/{resource_type}", responses=FHIR_RESPONSES)
async def search(kind: KindDep, request: Request, who: CallerDep, journal: Journal) -> JSONResponse:
    """Search: patient (required, except a citizen's own), category, type, date (ge/gt/le/lt/
    eq, repeatable), status (entered-in-error only when asked for), _count (≤ 100), _cursor.
    ``total`` and paging count only what the caller may see."""
    parameters = parse_search(list(request.query_params.multi_items()), lenient=lenient())
    page = await journal.search(who, kind, parameters)
    path = f"/fhir/R4/{kind.name}"
    kept = [*parameters.kept, ("_count", str(parameters.count))]
    self_link = str(request.url)
    next_link = None
    if page.next_cursor is not None:
        query = urlencode([*kept, ("_cursor", encode_cursor(page.next_cursor))])
        next_link = f"{str(request.base_url).rstrip('/')}{path}?{query}"
    return fhir(
        searchset(
            base_url(request),
            kind.name,
            page.resources,
            total=page.total,
            self_link=self_link,
            next_link=next_link,
        )
    )


@router.put(
    "/fhir/R4/{resource_type}",
    status_code=status.HTTP_200_OK,
    responses={
        **FHIR_RESPONSES,
        201: {"description": "Nothing matched: created"},
        412: {"description": "Several matched, or the match changed meanwhile"},
    },
    openapi_extra=BODY,
)
async def conditional_update(
    kind: KindDep,
    body: FhirBody,
    request: Request,
    who: CallerDep,
    journal: Journal,
    preference: PreferReturn,
) -> Response:
    """Conditional update (``PUT [type]?<search>``): one match the caller may see is updated
    (from the version found: a change meanwhile is 412), none creates (201), several are 412."""
    query = list(request.query_params.multi_items())
    if not query:
        raise BadRequest("a conditional update names search parameters")
    existing = await journal.match(who, kind, parse_search(query))
    if existing is None:
        if isinstance(body, dict) and body.get("id") is not None:
            raise BadRequest("nothing matched: a resource to create has no id")
        stored = await journal.create(who, kind, body, read_back=preference != "minimal")
        return written(stored, preference, status_code=201, location=True)
    resource_id = str(existing.resource["id"])
    stored = await journal.update(
        who,
        kind,
        resource_id,
        {**body, "id": resource_id} if isinstance(body, dict) else body,
        etag(existing.version),
        read_back=preference != "minimal",
    )
    return written(stored, preference)


@router.get("/fhir/R4/{resource_type}/{resource_id}", responses=FHIR_RESPONSES)
async def read(kind: KindDep, resource_id: str, who: CallerDep, journal: Journal) -> JSONResponse:
    return versioned(await journal.read(who, kind, resource_id))


@router.put(
    "/fhir/R4/{resource_type}/{resource_id}",
    responses={
        **FHIR_RESPONSES,
        412: {"description": "If-Match is not the current version"},
        428: {"description": "If-Match is required"},
    },
    openapi_extra=BODY,
)
async def update(
    kind: KindDep,
    resource_id: str,
    body: FhirBody,
    who: CallerDep,
    journal: Journal,
    preference: PreferReturn,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    """Versioned update: If-Match ``W/"<version>"`` required (428 without, 412 if stale). The
    body is the new version if the writer may read it (see ``Prefer``)."""
    stored = await journal.update(
        who, kind, resource_id, body, if_match, read_back=preference != "minimal"
    )
    return written(stored, preference)


@router.delete("/fhir/R4/{resource_type}/{resource_id}", responses=FHIR_RESPONSES)
async def enter_in_error(
    kind: KindDep,
    resource_id: str,
    who: CallerDep,
    journal: Journal,
    preference: PreferReturn,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    """Nothing is ever deleted: DELETE records a new version with status entered-in-error
    (If-Match optional) and returns it if the caller may read it (else an OperationOutcome;
    see ``Prefer``). A system client invalidates only what it recorded (the policy decides)."""
    stored = await journal.enter_in_error(
        who, kind, resource_id, if_match, read_back=preference != "minimal"
    )
    return written(stored, preference)


@router.get("/fhir/R4/{resource_type}/{resource_id}/_history", responses=FHIR_RESPONSES)
async def history(
    kind: KindDep, resource_id: str, request: Request, who: CallerDep, journal: Journal
) -> JSONResponse:
    """Every version, newest first, each with who changed it (meta.extension changed-by)."""
    versions = await journal.history(who, kind, resource_id)
    return fhir(history_bundle(base_url(request), versions))


@router.get("/fhir/R4/{resource_type}/{resource_id}/_history/{version}", responses=FHIR_RESPONSES)
async def read_version(
    kind: KindDep,
    resource_id: str,
    version: Annotated[int, Path(ge=1)],
    who: CallerDep,
    journal: Journal,
) -> JSONResponse:
    return versioned(await journal.read_version(who, kind, resource_id, version))


@router.patch("/fhir/R4/{resource_type}/{resource_id}", include_in_schema=False)
async def patch(resource_type: str, resource_id: str) -> None:
    raise MethodNotAllowed("use PUT with If-Match")


# -- supply use (not FHIR) -----------------------------------------------------------------


@router.post(
    "/visits/{encounter_id}/supplies",
    status_code=status.HTTP_201_CREATED,
    tags=["visits"],
    responses={**PROTECTED_RESPONSES, 404: {"content": {PROBLEM_JSON: {}}}},
)
async def record_supplies(
    encounter_id: str,
    lines: Annotated[list[SupplyUse], Body(min_length=1, max_length=100)],
    who: CallerDep,
    journal: Journal,
) -> dict[str, str]:
    """Supplies used on a visit (a write on the Encounter); emits ``journal.supplies.used``
    with the unit and the items, never the patient."""
    usage_id = await journal.record_supplies(who, encounter_id, lines)
    return {"usage_id": usage_id}
