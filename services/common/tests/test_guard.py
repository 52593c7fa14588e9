"""The input guard: hostile text, deep JSON, big bodies and long forms are 400/413, never routed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from akson_common.auth import CurrentPrincipal
from akson_common.errors import PROBLEM_JSON, declare_error_responses, install_problem_handlers
from akson_common.fhir import FHIR_JSON, install_fhir_outcomes
from akson_common.guard import (
    HostileInput,
    InputGuard,
    checked_json,
    json_depth_exceeds,
    parse_json,
)

HOSTILE_STRINGS = [
    "a\x00b",
    "\x01",
    "x\x1f",
    "\x7f",
    "\ud800",
    "\udfff",
    "\ufdd0",
    "\ufffe",
    "\U0010ffff",
]
FINE_STRINGS = ["plain", "tab\there", "line\nbreak\r\n", "æøå ÆØÅ", "emoji \U0001f600", "\ufeff"]


def guarded_app() -> tuple[FastAPI, list[Any]]:
    app = FastAPI()
    routed: list[Any] = []
    install_problem_handlers(app)
    install_fhir_outcomes(app)
    app.add_middleware(InputGuard, unchecked_bodies=("/events/",), max_body_bytes=64 * 1024)

    @app.get("/items/{item_id}")
    async def item(item_id: str, q: str = "") -> dict[str, str]:
        routed.append((item_id, q))
        return {"id": item_id}

    @app.post("/items")
    async def create(request: Request) -> dict[str, str]:
        routed.append(await request.json())
        return {"status": "stored"}

    @app.post("/form")
    async def form(request: Request) -> dict[str, int]:
        routed.append(await request.body())
        return {"fields": 1}

    @app.post("/events/topic")
    async def event(request: Request) -> dict[str, int]:
        routed.append(await request.body())
        return {"bytes": 1}

    @app.get("/fhir/R4/Thing")
    async def thing(category: str = "") -> dict[str, str]:
        routed.append(category)
        return {"resourceType": "Bundle"}

    return app, routed


def refused(answer: Any, status: int = 400) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.parametrize("text", HOSTILE_STRINGS)
def test_hostile_text_in_a_json_string_is_refused_naming_the_field_not_the_value(
    text: str,
) -> None:
    app, routed = guarded_app()
    body = json.dumps({"note": {"lines": ["ok", text]}}).encode()
    answer = TestClient(app).post(
        "/items", content=body, headers={"content-type": "application/json"}
    )
    problem = refused(answer)
    assert "body.note.lines[1]" in problem["detail"]
    assert text not in answer.text and json.dumps(text)[1:-1] not in answer.text
    assert routed == []


def test_a_hostile_object_key_is_refused() -> None:
    app, routed = guarded_app()
    answer = TestClient(app).post(
        "/items", content=b'{"a\\u0000": 1}', headers={"content-type": "application/fhir+json"}
    )
    assert "a key in body" in refused(answer)["detail"]
    assert routed == []


@pytest.mark.parametrize("text", FINE_STRINGS)
def test_ordinary_text_passes(text: str) -> None:
    app, routed = guarded_app()
    client = TestClient(app)
    assert client.post("/items", json={"note": text}).status_code == 200
    assert client.get("/items/x", params={"q": text}).status_code == 200
    assert routed == [{"note": text}, ("x", text)]


@pytest.mark.parametrize("path", ["/items/a%00b", "/items/%01", "/items/%ff", "/items/%ED%A0%80"])
def test_a_percent_encoded_control_or_non_utf8_path_is_refused(path: str) -> None:
    app, routed = guarded_app()
    assert refused(TestClient(app).get(path))["errors"][0]["loc"] == ["path"]
    assert routed == []


@pytest.mark.parametrize("query", ["q=%00", "q=a%1Fb", "q=%EF%BF%BE", "q%00=1", "q=%C3"])
def test_a_hostile_query_name_or_value_is_refused(query: str) -> None:
    app, routed = guarded_app()
    problem = refused(TestClient(app).get(f"/items/x?{query}"))
    assert "query" in problem["detail"]
    assert routed == []


def test_under_the_fhir_base_the_refusal_is_an_operation_outcome() -> None:
    app, routed = guarded_app()
    answer = TestClient(app).get("/fhir/R4/Thing?category=%00")
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["query.category"]
    assert routed == []


def test_a_control_character_in_a_header_is_refused() -> None:
    app, routed = guarded_app()
    answer = TestClient(app).get("/items/x", headers={"x-note": "a\x01b"})
    assert refused(answer)["errors"][0]["loc"] == ["header", "x-note"]
    assert routed == []


def test_json_nested_ten_thousand_deep_is_refused_before_parsing() -> None:
    app, routed = guarded_app()
    deep = b"[" * 10_000 + b"]" * 10_000
    answer = TestClient(app).post(
        "/items", content=deep, headers={"content-type": "application/json"}
    )
    assert "nested deeper" in refused(answer)["detail"]
    assert routed == []
    assert not json_depth_exceeds(
        b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 2
    )
    assert json_depth_exceeds(b'{"a": {"b": [1]}}', 2)


@pytest.mark.parametrize(
    "number",
    [b"1" * 5000, b"9223372036854775808", b"-9223372036854775809", b"1e999", b"NaN", b"-Infinity"],
)
def test_numbers_beyond_what_the_store_keeps_are_refused(number: bytes) -> None:
    with pytest.raises(HostileInput):
        parse_json(b'{"n": ' + number + b"}")
    assert parse_json(b'{"n": 9223372036854775807, "f": 1.5e300}') == {
        "n": 9223372036854775807,
        "f": 1.5e300,
    }


def test_invalid_json_and_invalid_utf8_are_refused() -> None:
    app, _ = guarded_app()
    client = TestClient(app)
    for body in (b"{", b'{"a": "\xff"}', b'{"a": 1,}'):
        refused(client.post("/items", content=body, headers={"content-type": "application/json"}))


def test_a_body_over_the_limit_is_413() -> None:
    app, routed = guarded_app()
    big = json.dumps({"a": "x" * 70_000}).encode()
    answer = TestClient(app).post(
        "/items", content=big, headers={"content-type": "application/json"}
    )
    refused(answer, 413)
    assert routed == []


def test_a_form_with_too_many_fields_or_hostile_values_is_refused() -> None:
    app, routed = guarded_app()
    client = TestClient(app)
    form = "&".join(f"f{i}=v" for i in range(25))
    headers = {"content-type": "application/x-www-form-urlencoded"}
    assert (
        "more than 20 fields"
        in refused(client.post("/form", content=form, headers=headers))["detail"]
    )
    assert refused(client.post("/form", content="grant_type=a%00", headers=headers))["errors"][0][
        "loc"
    ] == ["form", "grant_type"]
    assert (
        client.post("/form", content="grant_type=client_credentials", headers=headers).status_code
        == 200
    )
    assert routed == [b"grant_type=client_credentials"]


def test_bodies_of_unchecked_routes_reach_the_route() -> None:
    app, routed = guarded_app()
    body = b'{"data": "\\u0000"}'
    answer = TestClient(app).post(
        "/events/topic", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200
    assert routed == [body]


def test_the_openapi_document_declares_the_errors_every_operation_can_answer() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/fhir/R4/Thing/{thing_id}")
    async def thing(thing_id: str, principal: CurrentPrincipal) -> dict[str, str]:
        return {}

    @router.post("/open")
    async def open_route(request: Request) -> dict[str, str]:
        return {}

    app.include_router(router)
    declare_error_responses(app, [router])
    paths = app.openapi()["paths"]
    fhir = paths["/fhir/R4/Thing/{thing_id}"]["get"]["responses"]
    assert {"400", "401", "403", "404", "422", "503"} <= set(fhir)
    assert set(fhir["404"]["content"]) == {FHIR_JSON}
    assert fhir["404"]["content"][FHIR_JSON]["schema"]["title"] == "OperationOutcome"
    opened = paths["/open"]["post"]["responses"]
    assert {"400", "413", "415", "422"} <= set(opened) and "401" not in opened
    assert opened["400"]["content"][PROBLEM_JSON]["schema"]["title"] == "Problem"


def test_only_a_plain_request_id_is_echoed() -> None:
    from akson_common.app import RequestContextMiddleware

    app, _ = guarded_app()
    app.add_middleware(RequestContextMiddleware)
    client = TestClient(app)
    plain = client.get("/items/x", headers={"x-request-id": "req-1.2:3"})
    assert plain.headers["x-request-id"] == "req-1.2:3"
    odd = client.get("/items/x", headers={"x-request-id": "a b;" + "c" * 200})
    assert odd.headers["x-request-id"] != "a b;" + "c" * 200
    assert len(odd.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    "text",
    [
        b'{"data": {"municipality": "46\\u00001"}}',
        b'{"data": {"k\\u0007ey": 1}}',
        b'{"data": [1, 99999999999999999999]}',
        b'{"data": {"n": 1e400}}',
        b'{"data": {"n": NaN}}',
        b'{"data": {"ok": ["plain", 1, 2.5, true, null]}}',
    ],
)
def test_a_value_parsed_with_its_bulk_is_held_to_the_parsers_checks(text: bytes) -> None:
    """``checked_json`` on what plain ``json.loads`` made of the text refuses exactly what
    ``parse_json`` refuses, at the same location."""
    try:
        expected: Any = parse_json(text, location="event")
    except HostileInput as refusal:
        expected = refusal.location
    try:
        got: Any = checked_json(json.loads(text), location="event")
    except HostileInput as refusal:
        got = refusal.location
    assert got == expected
