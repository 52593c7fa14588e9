"""What a write answers (a response body is a read): the resource, an OperationOutcome, or
nothing (``Prefer: return=``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import Response

from journal.api import prefer_return, written
from journal.service import Stored

RESOURCE: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "obs-1",
    "status": "final",
    "valueQuantity": {"value": 6.1, "unit": "%"},
    "meta": {"versionId": "2", "lastUpdated": "2026-12-01T10:00:00Z"},
}


@pytest.mark.parametrize(
    ("header", "preference"),
    [
        (None, "representation"),
        ("return=minimal", "minimal"),
        ('respond-async, return="OperationOutcome"', "OperationOutcome"),
        ("handling=strict", "representation"),
    ],
)
def test_the_prefer_header_is_read_as_rfc_7240_says(header: str | None, preference: str) -> None:
    assert asyncio.run(prefer_return(header)) == preference


def text(answer: Response) -> str:
    return bytes(answer.body).decode()


def test_a_writer_that_may_read_it_back_gets_the_resource() -> None:
    answer = written(Stored(RESOURCE, 2), "representation", status_code=201, location=True)
    assert answer.status_code == 201 and json.loads(text(answer)) == RESOURCE
    assert answer.headers["etag"] == 'W/"2"'
    assert answer.headers["location"] == "/fhir/R4/Observation/obs-1/_history/2"


@pytest.mark.parametrize("preference", ["representation", "OperationOutcome"])
def test_a_writer_that_may_not_read_it_back_gets_no_content(preference: str) -> None:
    answer = written(Stored(RESOURCE, 2, readable=False), preference)
    body = json.loads(text(answer))
    assert answer.status_code == 200 and body["resourceType"] == "OperationOutcome"
    assert "6.1" not in text(answer) and "final" not in text(answer)
    assert answer.headers["etag"] == 'W/"2"'


def test_return_minimal_answers_no_body_but_the_version() -> None:
    answer = written(Stored(RESOURCE, 2), "minimal", status_code=201, location=True)
    assert answer.status_code == 201 and answer.body == b""
    assert answer.headers["etag"] == 'W/"2"' and answer.headers["location"]
