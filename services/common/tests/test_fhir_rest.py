"""The FHIR RESTful API's common parts (akson_common.fhir_rest) around a small FHIR route."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from akson_common.fhir import FHIR_JSON, install_fhir_outcomes
from akson_common.fhir_rest import (
    FhirRest,
    accepts_json,
    lenient,
    preferences,
    strict_parameters,
)

FHIR_UTF8 = f"{FHIR_JSON}; charset=utf-8"


def searchset(query: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 2,
        "link": [{"relation": "self", "url": "x"}, {"relation": "next", "url": "y"}],
        "entry": [
            {"resource": {"resourceType": "Flag", "id": str(i), "status": "active", "code": {}}}
            for i in range(2)
        ],
        # what the route saw, to compare GET and POST _search
        "meta": {"tag": [{"code": f"{n}={v}"} for n, v in query]},
    }


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()

    @app.get("/fhir/R4/Flag")
    async def search(request: Request) -> JSONResponse:
        query = list(request.query_params.multi_items())
        if lenient():
            query.append(("lenient", "yes"))
        return JSONResponse(searchset(query), media_type=FHIR_JSON)

    @app.get("/fhir/R4/Flag/{flag}")
    async def read(flag: str) -> JSONResponse:
        resource = {"resourceType": "Flag", "id": flag, "status": "active", "code": {}}
        return JSONResponse(resource, media_type=FHIR_JSON, headers={"ETag": 'W/"3"'})

    @app.get("/other")
    async def other() -> JSONResponse:
        return JSONResponse({"a": 1})

    app.add_middleware(FhirRest)
    return TestClient(app)


@pytest.mark.parametrize("fmt", ["xml", "application/fhir+xml", "ttl", "text/turtle"])
def test_what_is_not_json_is_406_as_an_operation_outcome(client: TestClient, fmt: str) -> None:
    answer = client.get("/fhir/R4/Flag", params={"_format": fmt})
    assert answer.status_code == 406
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert answer.headers["content-type"] == FHIR_UTF8


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml, text/turtle"])
def test_an_accept_without_json_is_406(client: TestClient, accept: str) -> None:
    assert client.get("/fhir/R4/Flag/1", headers={"accept": accept}).status_code == 406


@pytest.mark.parametrize(
    ("fmt", "accept"),
    [
        ("json", None),
        ("application/fhir+json", None),
        (None, "application/fhir+json"),
        (None, "application/fhir+xml;q=0.9, */*;q=0.1"),
        (None, "application/json"),
        (None, None),
    ],
)
def test_json_is_served_with_its_charset(
    client: TestClient, fmt: str | None, accept: str | None
) -> None:
    answer = client.get(
        "/fhir/R4/Flag/1",
        params={"_format": fmt} if fmt else None,
        headers={"accept": accept} if accept else None,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == FHIR_UTF8


def test_accept_weights_and_preferences_parse() -> None:
    assert not accepts_json("application/fhir+json;q=0")
    assert accepts_json("application/fhir+json;q=0.5")
    assert preferences('return=minimal, handling="lenient"') == {
        "return": "minimal",
        "handling": "lenient",
    }


def test_post_search_is_the_same_search_as_get(client: TestClient) -> None:
    by_get = client.get("/fhir/R4/Flag", params=[("patient", "1"), ("status", "active")])
    by_post = client.post(
        "/fhir/R4/Flag/_search?patient=1",
        data={"status": "active"},
    )
    assert by_post.status_code == 200, by_post.text
    assert by_post.json() == by_get.json()
    refused = client.post(
        "/fhir/R4/Flag/_search", content=b"{}", headers={"content-type": "application/json"}
    )
    assert refused.status_code == 415


@pytest.mark.parametrize("params", [{"_summary": "count"}, {"_count": "0"}])
def test_a_count_is_the_total_without_entries(client: TestClient, params: dict[str, str]) -> None:
    bundle = client.get("/fhir/R4/Flag", params=params).json()
    assert bundle["total"] == 2
    assert "entry" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self"]


def test_total_none_elements_and_unsupported_summary(client: TestClient) -> None:
    assert "total" not in client.get("/fhir/R4/Flag", params={"_total": "none"}).json()
    subset = client.get("/fhir/R4/Flag", params={"_elements": "status"}).json()
    resource = subset["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "status", "meta"}
    assert resource["meta"]["tag"][0]["code"] == "SUBSETTED"
    read = client.get("/fhir/R4/Flag/1", params={"_elements": "code"}).json()
    assert set(read) == {"resourceType", "id", "code", "meta"}
    assert client.get("/fhir/R4/Flag", params={"_summary": "text"}).status_code == 400
    lenient_answer = client.get(
        "/fhir/R4/Flag", params={"_summary": "text"}, headers={"prefer": "handling=lenient"}
    )
    assert lenient_answer.status_code == 200
    assert {"code": "lenient=yes"} in lenient_answer.json()["meta"]["tag"]


def test_if_none_match_with_the_current_etag_is_304_without_a_body(client: TestClient) -> None:
    same = client.get("/fhir/R4/Flag/1", headers={"if-none-match": 'W/"3"'})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["etag"] == 'W/"3"'
    older = client.get("/fhir/R4/Flag/1", headers={"if-none-match": 'W/"2"'})
    assert older.status_code == 200 and older.json()["id"] == "1"


def test_other_paths_are_left_alone(client: TestClient) -> None:
    answer = client.get("/other", params={"_format": "xml"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"


def test_parameters_a_route_does_not_declare_are_refused_unless_lenient() -> None:
    app = FastAPI(dependencies=[Depends(strict_parameters)])
    install_fhir_outcomes(app)

    @app.get("/fhir/R4/Consent")
    async def declared(patient: str = Query()) -> JSONResponse:
        return JSONResponse({"resourceType": "Bundle", "type": "searchset"})

    @app.get("/fhir/R4/Flag")
    async def parses_itself() -> JSONResponse:
        return JSONResponse({"resourceType": "Bundle", "type": "searchset"})

    app.add_middleware(FhirRest)
    client = TestClient(app)
    assert client.get("/fhir/R4/Consent", params={"patient": "1", "_count": "5"}).status_code == 200
    refused = client.get("/fhir/R4/Consent", params={"patient": "1", "nme": "x"})
    assert refused.status_code == 400
    assert "nme" in refused.json()["issue"][0]["diagnostics"]
    lenient_answer = client.get(
        "/fhir/R4/Consent",
        params={"patient": "1", "nme": "x"},
        headers={"prefer": "handling=lenient"},
    )
    assert lenient_answer.status_code == 200
    assert client.get("/fhir/R4/Flag", params={"anything": "x"}).status_code == 200
