"""Database failures nothing handled are a 503 with Retry-After (409 for a duplicate key), as
problem+json or, under /fhir, an OperationOutcome — never a 500 (issue 16: a PostgreSQL or
FerretDB restart and a full disk answered 500). The database port is replaced at its boundary:
the route raises what PyMongo raises."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteError,
)

from akson_common.errors import PROBLEM_JSON, install_problem_handlers
from akson_common.fhir import FHIR_JSON, install_fhir_outcomes

SECRET = "12345678901"  # a value the database's message may quote: never in the answer

FAILURES: list[PyMongoError] = [
    AutoReconnect(f"connection closed {SECRET}"),
    NetworkTimeout("timed out"),
    ServerSelectionTimeoutError("no servers"),
    OperationFailure(f"could not extend file: No space left on device {SECRET}", code=1),
    WriteError(f"permission denied {SECRET}", code=13),
]


def app_raising(error: PyMongoError) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    install_fhir_outcomes(app)

    @app.post("/things")
    async def things() -> None:
        raise error

    @app.post("/fhir/R4/Thing")
    async def fhir_thing() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
def test_a_database_failure_is_a_503_problem_with_retry_after(error: PyMongoError) -> None:
    answer = app_raising(error).post("/things")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["reasons"] == ["database_unavailable"]
    assert SECRET not in answer.text


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
def test_under_fhir_it_is_a_503_operation_outcome(error: PyMongoError) -> None:
    answer = app_raising(error).post("/fhir/R4/Thing")
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    assert answer.headers["retry-after"] == "5"
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
    assert SECRET not in answer.text


def test_a_duplicate_key_is_a_409_conflict() -> None:
    client = app_raising(DuplicateKeyError(f"E11000 dup key {SECRET}", code=11000))
    answer = client.post("/things")
    assert answer.status_code == 409
    assert SECRET not in answer.text
    assert client.post("/fhir/R4/Thing").json()["issue"][0]["code"] == "conflict"


def test_any_other_error_is_still_a_500() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    assert TestClient(app, raise_server_exceptions=False).get("/boom").status_code == 500
