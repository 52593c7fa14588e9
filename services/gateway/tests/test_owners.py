"""The gateway without servers: routing from the owners' statements, the assembled statement,
links moved to the one base, and what an invocation sends (the sidecar answered in-process)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from akson_common.errors import NotFound, ServiceUnavailable
from akson_common.fhir import capability_statement, resource_capability
from gateway.owners import (
    Invoker,
    Owners,
    assemble,
    rewrite_links,
    rewrite_url,
    routing_table,
)

BASE = "https://fhir.example/fhir/R4"


def statement(*types: str, operation: str | None = None) -> dict[str, Any]:
    operations = [{"name": operation, "definition": f"urn:op:{operation}"}] if operation else None
    return capability_statement(
        "an owner",
        "http://127.0.0.1:1/fhir/R4",
        [resource_capability(t, ["read"], [("patient", "reference")]) for t in types],
        operations,
    )


def test_each_type_goes_to_the_first_owner_listing_it() -> None:
    table = routing_table(
        {
            "masterdata": statement("Patient", "Organization"),
            "journal": statement("Patient", "Flag"),
        }
    )
    assert table == {"Patient": "masterdata", "Organization": "masterdata", "Flag": "journal"}


def test_the_assembled_statement_lists_every_type_once_and_validates() -> None:
    assembled = assemble(
        {
            "masterdata": statement("Patient"),
            "consent": statement("Consent"),
            "journal": statement("Observation", "Patient", operation="summary"),
        },
        BASE,
        [],
    )
    CapabilityStatement.model_validate(assembled)
    types = [r["type"] for r in assembled["rest"][0]["resource"]]
    assert types == ["Consent", "Observation", "Patient"]
    assert [o["name"] for o in assembled["rest"][0]["operation"]] == ["summary"]
    assert assembled["implementation"]["url"] == BASE


@pytest.mark.parametrize(
    ("url", "moved"),
    [
        ("http://127.0.0.1:4711/fhir/R4/Observation?_cursor=x", f"{BASE}/Observation?_cursor=x"),
        ("/fhir/R4/Observation/1/_history/2", f"{BASE}/Observation/1/_history/2"),
        ("http://127.0.0.1:4711/fhir/R4", BASE),
        ("urn:uuid:0b8e6d9e", "urn:uuid:0b8e6d9e"),
        ("http://elsewhere/fhir/R4X/Patient", "http://elsewhere/fhir/R4X/Patient"),
    ],
)
def test_urls_under_an_owners_base_move_to_the_one_base(url: str, moved: str) -> None:
    assert rewrite_url(url, BASE) == moved


def test_a_bundles_links_and_full_urls_move_nested_ones_too() -> None:
    bundle = {
        "resourceType": "Bundle",
        "link": [{"relation": "next", "url": "http://a:1/fhir/R4/Flag?_cursor=c"}],
        "entry": [
            {
                "fullUrl": "http://a:1/fhir/R4/Flag/1",
                "resource": {
                    "resourceType": "Bundle",
                    "entry": [{"fullUrl": "http://b:2/fhir/R4/Flag/2"}],
                },
            }
        ],
    }
    moved = rewrite_links(bundle, BASE)
    assert moved["link"][0]["url"] == f"{BASE}/Flag?_cursor=c"
    assert moved["entry"][0]["fullUrl"] == f"{BASE}/Flag/1"
    assert moved["entry"][0]["resource"]["entry"][0]["fullUrl"] == f"{BASE}/Flag/2"


class Sidecar:
    """Answers as daprd would: the app's answer, or its own error for an unknown app."""

    def __init__(self, statements: dict[str, dict[str, Any]]) -> None:
        self.statements = statements
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = request.url.path.split("/")  # /v1.0/invoke/<app>/method/<path>
        app_id = parts[3]
        if app_id not in self.statements:
            return httpx.Response(500, json={"errorCode": "ERR_DIRECT_INVOKE", "message": "x"})
        if request.url.path.endswith("/metadata"):
            return httpx.Response(200, json=self.statements[app_id])
        return httpx.Response(
            200, json={"resourceType": "Bundle"}, headers={"etag": 'W/"1"', "set-cookie": "a=b"}
        )


async def test_an_invocation_goes_through_the_sidecar_with_the_callers_token_only() -> None:
    sidecar = Sidecar({"journal": statement("Observation")})
    async with httpx.AsyncClient(transport=httpx.MockTransport(sidecar)) as http:
        invoker = Invoker(http, "http://127.0.0.1:3500/", "dapr-token", 5.0)
        answer = await invoker.call(
            "journal",
            "GET",
            "/fhir/R4/Observation",
            query="patient=1&_count=2",
            headers={"Authorization": "Bearer t", "Cookie": "session=1", "Prefer": "x"},
        )
    sent = sidecar.requests[-1]
    assert str(sent.url) == (
        "http://127.0.0.1:3500/v1.0/invoke/journal/method/fhir/R4/Observation?patient=1&_count=2"
    )
    assert sent.headers["authorization"] == "Bearer t"
    assert sent.headers["dapr-api-token"] == "dapr-token"
    assert sent.headers["prefer"] == "x"
    assert "cookie" not in sent.headers
    assert answer.headers == {"content-type": "application/json", "etag": 'W/"1"'}
    assert json.loads(answer.body) == {"resourceType": "Bundle"}


async def test_routes_come_from_the_owners_and_a_missing_owner_is_unavailable_not_another() -> None:
    sidecar = Sidecar({"journal": statement("Observation"), "consent": statement("Consent")})
    async with httpx.AsyncClient(transport=httpx.MockTransport(sidecar)) as http:
        invoker = Invoker(http, "http://127.0.0.1:3500", "", 5.0)
        owners = Owners(invoker, ("masterdata", "consent", "journal"), ttl=60.0)
        assert await owners.routes() == {"Consent": "consent", "Observation": "journal"}
        assert await owners.owner_of("Observation") == "journal"
        with pytest.raises(NotFound):
            await owners.owner_of("Patient")  # its owner did not answer
        asked = len(sidecar.requests)
        await owners.routes()  # cached: the answering owners are not asked again
        assert len(sidecar.requests) == asked + 1  # only the one that did not answer
        with pytest.raises(ServiceUnavailable):
            await invoker.call("masterdata", "GET", "/fhir/R4/Patient/1")
