"""Problem details (RFC 9457) for every error a service returns.

Domain code raises :class:`Problem` subclasses; one handler maps them to HTTP. Nothing deep in
the logic raises ``HTTPException``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


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
