"""FHIR R4 plumbing every service with a FHIR API shares: the media type and errors as
``OperationOutcome`` (with the same HTTP status the problem+json answer would have had).

Routes outside the FHIR base keep problem+json (RFC 9457). Like problem details, an outcome
never echoes submitted values: validation errors name locations only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from akson_common.errors import PROBLEM_JSON, Problem, storage_problem

FHIR_JSON = "application/fhir+json"

# HTTP status -> OperationOutcome issue type (http://hl7.org/fhir/issue-type)
ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    428: "required",
    503: "transient",
}

ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def operation_outcome(
    status: int, diagnostics: str, *, locations: list[str] | None = None, severity: str = "error"
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": severity,
        "code": ISSUE_TYPES.get(status, "exception"),
        "diagnostics": diagnostics,
    }
    if locations:
        issue["expression"] = locations
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(
    status: int,
    diagnostics: str,
    *,
    locations: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        operation_outcome(status, diagnostics, locations=locations),
        status_code=status,
        media_type=FHIR_JSON,
        headers=headers,
    )


def _locations(errors: Any) -> list[str]:
    locations = []
    for error in errors or []:
        loc = error.get("loc") if isinstance(error, dict) else None
        if loc:
            locations.append(".".join(str(part) for part in loc))
    return locations


def install_fhir_outcomes(app: FastAPI, base: str = "/fhir/") -> None:
    """Answer errors under ``base`` as OperationOutcome; elsewhere keep problem+json.

    Call after the problem handlers are installed (the app factory does that first).
    """
    previous: dict[Any, ExceptionHandler] = dict(app.exception_handlers)

    def wrap(kind: type[Exception], fhir: ExceptionHandler) -> None:
        fallback = previous.get(kind)

        async def handler(request: Request, exc: Exception) -> Response:
            if request.url.path.startswith(base) or fallback is None:
                return await fhir(request, exc)
            return await fallback(request, exc)

        app.add_exception_handler(kind, handler)

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        reasons = exc.extra.get("reasons")
        detail = f"{exc.detail} (reasons: {', '.join(reasons)})" if reasons else exc.detail
        return outcome_response(
            exc.status,
            detail,
            locations=_locations(exc.extra.get("errors")),
            headers=exc.headers,
        )

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return outcome_response(
            400 if _in_query(exc) else 422,
            "The request is not valid.",
            locations=_locations(exc.errors()),
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return outcome_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    async def on_storage(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PyMongoError)
        return await on_problem(request, storage_problem(exc))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return outcome_response(500, "An unexpected error occurred.")

    wrap(Problem, on_problem)
    wrap(RequestValidationError, on_validation)
    wrap(StarletteHTTPException, on_http)
    wrap(PyMongoError, on_storage)
    wrap(Exception, on_unexpected)


# -- the CapabilityStatement each FHIR-serving service answers at [base]/metadata --------------


def resource_capability(
    resource_type: str,
    interactions: list[str],
    search_params: Sequence[tuple[str, str]] = (),
    **extra: Any,
) -> dict[str, Any]:
    """One ``rest.resource`` entry: ``search_params`` as ``(name, type)``."""
    entry: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": code} for code in interactions],
        **extra,
    }
    if search_params:
        entry["searchParam"] = [{"name": n, "type": t} for n, t in search_params]
    return entry


def capability_statement(
    description: str,
    base: str,
    resources: list[dict[str, Any]],
    operations: list[dict[str, str]] | None = None,
    date: str | None = None,
) -> dict[str, Any]:
    """A server's CapabilityStatement (FHIR 4.0.1, JSON only). The gateway assembles the one of
    the platform FHIR base from these, and routes each listed type to the service listing it."""
    rest: dict[str, Any] = {
        "mode": "server",
        "security": {"description": "Bearer tokens from the Akson identity service"},
        "resource": resources,
    }
    if operations:
        rest["operation"] = operations
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "implementation": {"description": description, "url": base},
        "rest": [rest],
    }


def fhir_base(request: Request) -> str:
    """This server's FHIR base as the caller reached it."""
    return f"{str(request.base_url).rstrip('/')}/fhir/R4"


def _in_query(exc: RequestValidationError) -> bool:
    return all((e.get("loc") or ("",))[0] in {"query", "header", "path"} for e in exc.errors())


__all__ = [
    "FHIR_JSON",
    "capability_statement",
    "fhir_base",
    "resource_capability",
    "PROBLEM_JSON",
    "install_fhir_outcomes",
    "operation_outcome",
    "outcome_response",
]
