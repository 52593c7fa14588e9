"""Problem details (RFC 9457) for every error a service returns.

Domain code raises :class:`Problem` subclasses; one handler maps them to HTTP. Nothing deep in
the logic raises ``HTTPException``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import DuplicateKeyError, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("akson.errors")


class Problem(Exception):
    """A domain error that knows its HTTP status and problem type."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    type_slug: ClassVar[str] = "internal"

    def __init__(
        self, detail: str = "", *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str) -> dict[str, Any]:
        return {
            "type": f"https://akson.dev/problems/{self.type_slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            **self.extra,
        }


class BadRequest(Problem):
    status, title, type_slug = 400, "Bad Request", "bad-request"


class Unauthorized(Problem):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(
            detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}, **extra
        )


class Forbidden(Problem):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, type_slug = 404, "Not Found", "not-found"


class Conflict(Problem):
    status, title, type_slug = 409, "Conflict", "conflict"


class PreconditionFailed(Problem):
    status, title, type_slug = 412, "Precondition Failed", "precondition-failed"


class PreconditionRequired(Problem):
    status, title, type_slug = 428, "Precondition Required", "precondition-required"


class MethodNotAllowed(Problem):
    status, title, type_slug = 405, "Method Not Allowed", "method-not-allowed"


class UnsupportedMediaType(Problem):
    status, title, type_slug = 415, "Unsupported Media Type", "unsupported-media-type"


class Unprocessable(Problem):
    status, title, type_slug = 422, "Unprocessable Content", "validation"


class ServiceUnavailable(Problem):
    status, title, type_slug = 503, "Service Unavailable", "unavailable"


# how long a client should wait before trying again when the database is away
STORAGE_RETRY_AFTER_SECONDS = 5


def storage_problem(exc: PyMongoError) -> Problem:
    """The answer to a database failure nothing above the storage handled (issue 16: a
    PostgreSQL or FerretDB restart, a full or read-only disk answered 500): a concurrent
    insert of the same key is a 409; anything else — no connection, a timeout, a write the
    database refused — is a 503 with ``Retry-After``: the platform is away for a moment, the
    request was fine. Only the error's class is named: its message may quote stored values."""
    if isinstance(exc, DuplicateKeyError):
        return Conflict("The resource was changed at the same time; read it and try again.")
    log.warning("database unavailable", extra={"error": type(exc).__name__})
    return ServiceUnavailable(
        "The database is unavailable or refused the operation; try again later.",
        headers={"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)},
        reasons=["database_unavailable"],
    )


def problem_response(
    status: int, title: str, detail: str, instance: str, slug: str, **extra: Any
) -> JSONResponse:
    body = {
        "type": f"https://akson.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    """Map domain problems, validation errors and routing errors to problem+json."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        response = JSONResponse(
            exc.body(request.url.path), status_code=exc.status, media_type=PROBLEM_JSON
        )
        response.headers.update(exc.headers)
        return response

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Only locations and messages: the rejected input itself may be health data.
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
            for e in exc.errors()
        ]
        return problem_response(
            422,
            "Unprocessable Content",
            "The request is not valid.",
            request.url.path,
            "validation",
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        response = problem_response(
            exc.status_code,
            _reason(exc.status_code),
            str(exc.detail),
            request.url.path,
            f"http-{exc.status_code}",
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_storage(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PyMongoError)
        return await on_problem(request, storage_problem(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            500,
            "Internal Server Error",
            "An unexpected error occurred.",
            request.url.path,
            "internal",
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(PyMongoError, on_storage)
    app.add_exception_handler(Exception, on_unexpected)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# The error responses of every route that touches health data, for the OpenAPI document.
PROTECTED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid bearer token", "content": {PROBLEM_JSON: {}}},
    403: {"description": "Denied by the access policy", "content": {PROBLEM_JSON: {}}},
    503: {"description": "No access decision could be made: denied", "content": {PROBLEM_JSON: {}}},
}


# -- what every operation can answer, declared once (applied by the app factory) ----------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; never echoes submitted values.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}
OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "OperationOutcome",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string"},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
ERROR_DESCRIPTIONS = {
    400: "Malformed or hostile input (refused before routing), or a bad request",
    401: "No valid bearer token",
    403: "Denied by the access policy",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed (If-Match)",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Not valid",
    428: "Precondition required (If-Match)",
    503: "No access decision could be made, or a dependency is away: denied",
}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_response(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """A route's own error for its ``responses=``; the app factory adds the media type and
    schema (:func:`declare_error_responses`), so no route repeats them."""
    return {status: {"description": description}}


def _requires_principal(dependant: Any) -> bool:
    from akson_common.auth import current_principal

    return any(
        d.call is current_principal or _requires_principal(d) for d in dependant.dependencies
    )


def declare_error_responses(
    app: FastAPI, routers: Sequence[APIRouter] = (), fhir_base: str = "/fhir/"
) -> None:
    """Add to every operation's OpenAPI responses the errors it can answer, with their schema:
    400 (the input guard) and 422 everywhere; 413 and 415 where a body is taken; 404 where the
    path has parameters; 401, 403 and 503 where a token is required. Under ``fhir_base`` the
    body is an OperationOutcome (``application/fhir+json``), elsewhere problem+json. What a
    route declares itself is kept (its description; its content, given the schema).

    Done on the generated document (FastAPI builds it lazily from included routers)."""
    from fastapi.routing import APIRoute

    protected: set[tuple[str, str]] = set()
    for route in [*app.router.routes, *(r for router in routers for r in router.routes)]:
        if isinstance(route, APIRoute) and _requires_principal(route.dependant):
            protected |= {(route.path_format, method.lower()) for method in route.methods or ()}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "responses" in operation:
                    _declare(operation, path, method, (path, method) in protected, fhir_base)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(
    operation: dict[str, Any], path: str, method: str, protected: bool, fhir_base: str
) -> None:
    fhir = path.startswith(fhir_base)
    media, schema = (
        ("application/fhir+json", OUTCOME_SCHEMA)
        if fhir
        else (
            PROBLEM_JSON,
            PROBLEM_SCHEMA,
        )
    )
    statuses = {400, 422}
    if "requestBody" in operation or method.upper() in BODY_METHODS:
        statuses |= {413, 415}
    if any(p.get("in") == "path" for p in operation.get("parameters") or []):
        statuses.add(404)
    if protected:
        statuses |= {401, 403, 503}
    responses: dict[str, Any] = operation["responses"]
    if fhir:  # FHIR answers are application/fhir+json, whatever FastAPI assumed
        for code, answer in responses.items():
            success = answer.get("content") or {}
            if str(code).startswith("2") and "application/json" in success:
                success.setdefault("application/fhir+json", success.pop("application/json"))
    for status in statuses | {int(s) for s in responses if _is_error(s)}:
        declared = responses.setdefault(str(status), {})
        declared.setdefault("description", ERROR_DESCRIPTIONS.get(status, "Error"))
        # a route's own schema stays (identity's OAuth errors); empty placeholders and
        # FastAPI's default validation schema give way to what the handlers really send
        content = {
            k: v
            for k, v in (declared.get("content") or {}).items()
            if v.get("schema")
            and not (fhir and k == PROBLEM_JSON)
            and not (status == 422 and k == "application/json")
        }
        content[media] = {"schema": schema}
        declared["content"] = content


def _is_error(status: int | str) -> bool:
    return str(status).isdigit() and int(status) >= 400
