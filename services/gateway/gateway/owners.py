"""The services behind the one FHIR base: reaching them (Dapr service invocation through the
gateway's own sidecar) and knowing which types each owns (their own CapabilityStatements).

The gateway decides no access: it forwards the caller's bearer token, and the owner asks the
policy for whatever it answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from akson_common.errors import NotFound, ServiceUnavailable
from akson_common.fhir import FHIR_JSON, capability_statement

log = logging.getLogger(__name__)

BASE_PATH = "/fhir/R4"
# what a FHIR request carries that the owner needs (the token, the versions, the preferences,
# Akson's purpose and break-glass reason); nothing else is forwarded
FORWARDED_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "if-modified-since",
    "prefer",
    "akson-purpose",
    "akson-emergency-reason",
    "x-request-id",
)
FORWARDED_RESPONSE_HEADERS = (
    "content-type",
    "etag",
    "last-modified",
    "location",
    "content-location",
    "akson-decision-id",
    "akson-obligations",
    "www-authenticate",
    "retry-after",
)

Json = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """An owner's answer: status, the headers worth passing on, the body (bytes)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


class Invoker:
    """Requests to an app through the gateway's sidecar: ``/v1.0/invoke/<app>/method/<path>``."""

    def __init__(self, http: httpx.AsyncClient, sidecar: str, token: str, timeout: float) -> None:
        self.http = http
        self.sidecar = sidecar.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def call(
        self,
        app_id: str,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | str = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        forwarded = {
            name: value
            for name, value in (headers or {}).items()
            if name.lower() in FORWARDED_REQUEST_HEADERS
        }
        if self.token:
            forwarded["dapr-api-token"] = self.token
        url = f"{self.sidecar}/v1.0/invoke/{app_id}/method/{path.lstrip('/')}"
        params: Any = query if isinstance(query, str) else list(query)
        try:
            response = await self.http.request(
                method,
                url,
                params=params or None,
                headers=forwarded,
                content=body,
                timeout=self.timeout,
            )
        except httpx.HTTPError:
            log.warning("invocation of %s failed", app_id)
            raise ServiceUnavailable(f"the {app_id} service is not reachable") from None
        if response.status_code >= 500 and _sidecar_error(response):
            # the sidecar's own error (no such app, app unreachable), not the app's answer
            log.warning("invocation of %s failed in the sidecar", app_id)
            raise ServiceUnavailable(f"the {app_id} service is not reachable")
        kept = {
            name: value
            for name, value in response.headers.items()
            if name.lower() in FORWARDED_RESPONSE_HEADERS
        }
        return Answer(response.status_code, kept, response.content)


def _sidecar_error(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("errorCode", "")).startswith("ERR_")


@dataclass
class _Known:
    statement: Json | None = None
    fetched_at: float = -float("inf")


@dataclass
class Owners:
    """Each owner's CapabilityStatement, asked again after ``ttl`` seconds; an owner that does
    not answer keeps its last statement (its types stay routed: the owner answers 503 or the
    invocation fails, never another service)."""

    invoker: Invoker
    app_ids: tuple[str, ...]
    ttl: float
    _known: dict[str, _Known] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def statements(self) -> dict[str, Json]:
        now = time.monotonic()
        stale = [a for a in self.app_ids if now - self._entry(a).fetched_at >= self.ttl]
        if stale:
            async with self._lock:
                now = time.monotonic()
                stale = [a for a in stale if now - self._entry(a).fetched_at >= self.ttl]
                fetched = await asyncio.gather(*(self._fetch(a) for a in stale))
                for app_id, statement in zip(stale, fetched, strict=True):
                    if statement is not None:
                        self._known[app_id] = _Known(statement, now)
        return {a: k.statement for a in self.app_ids if (k := self._entry(a)).statement}

    def _entry(self, app_id: str) -> _Known:
        return self._known.setdefault(app_id, _Known())

    async def _fetch(self, app_id: str) -> Json | None:
        try:
            answer = await self.invoker.call(
                app_id, "GET", f"{BASE_PATH}/metadata", headers={"accept": FHIR_JSON}
            )
        except ServiceUnavailable:
            return None
        statement = answer.json()
        if answer.status != 200 or not isinstance(statement, dict):
            log.warning("%s answered no CapabilityStatement (%s)", app_id, answer.status)
            return None
        if statement.get("resourceType") != "CapabilityStatement":
            return None
        return statement

    async def routes(self) -> dict[str, str]:
        """Resource type -> the app id owning it (the first owner listing a type keeps it)."""
        return routing_table(await self.statements())

    async def owner_of(self, resource_type: str, operation: str | None = None) -> str:
        """The owner of ``resource_type``; for an operation (``$summary``) the type's owner if
        it lists the operation, else the owner that does (the journal's
        ``Patient/{id}/$summary``: Patient is master data's)."""
        statements = await self.statements()
        owner = routing_table(statements).get(resource_type)
        name = (operation or "").removeprefix("$")
        if name and (owner is None or name not in _operations(statements[owner])):
            for app_id, statement in statements.items():
                if name in _operations(statement):
                    return app_id
        if owner is None:
            raise NotFound(f"no service of this platform keeps {resource_type[:40]!r} resources")
        return owner


def routing_table(statements: Mapping[str, Json]) -> dict[str, str]:
    table: dict[str, str] = {}
    for app_id, statement in statements.items():
        for resource in _resources(statement):
            if isinstance(resource.get("type"), str):
                table.setdefault(resource["type"], app_id)
    return table


def _operations(statement: Json) -> set[str]:
    return {
        str(operation.get("name"))
        for rest in statement.get("rest") or []
        if isinstance(rest, dict)
        for operation in rest.get("operation") or []
        if isinstance(operation, dict)
    }


def _resources(statement: Json) -> list[Json]:
    return [
        resource
        for rest in statement.get("rest") or []
        if isinstance(rest, dict) and rest.get("mode") == "server"
        for resource in rest.get("resource") or []
        if isinstance(resource, dict)
    ]


def assemble(statements: Mapping[str, Json], base: str, operations: list[Json]) -> Json:
    """The platform's one CapabilityStatement: every type of every owner (the owner's entry as
    it wrote it), the owners' operations, and the gateway's own system-level ones."""
    table = routing_table(statements)
    resources = [
        resource
        for app_id, statement in statements.items()
        for resource in _resources(statement)
        if table.get(resource.get("type", "")) == app_id
    ]
    seen: set[str] = set()
    merged_operations = []
    for operation in [
        *(
            op
            for statement in statements.values()
            for rest in statement.get("rest") or []
            for op in rest.get("operation") or []
        ),
        *operations,
    ]:
        if isinstance(operation, dict) and operation.get("name") not in seen:
            seen.add(str(operation.get("name")))
            merged_operations.append(operation)
    resources = _with_includes(resources)
    statement = capability_statement(
        "Akson: the one FHIR R4 base of the platform (each type served by the service owning "
        "it; fhir.resources R4B models, wire-compatible with R4 for these types)",
        base,
        sorted(resources, key=lambda r: str(r["type"])),
        merged_operations,
    )
    statement["rest"][0]["interaction"] = [{"code": "batch"}, {"code": "transaction"}]
    return statement


def _with_includes(resources: list[Json]) -> list[Json]:
    """Each type's ``searchInclude`` (its reference parameters) and ``searchRevInclude`` (the
    reference parameters of other types pointing at it: ``patient`` points at Patient); the
    gateway answers both (:mod:`gateway.includes`)."""
    pointing = [
        (str(r["type"]), str(p["name"]))
        for r in resources
        for p in r.get("searchParam") or []
        if p.get("type") == "reference" and p.get("name") in ("patient", "subject")
    ]
    shown = []
    for resource in resources:
        entry = dict(resource)
        params = [p for p in entry.get("searchParam") or [] if p.get("type") == "reference"]
        if params:
            entry["searchInclude"] = [f"{entry['type']}:{p['name']}" for p in params]
        if entry["type"] == "Patient":
            entry["searchRevInclude"] = [f"{t}:{n}" for t, n in pointing if n == "patient"]
        shown.append(entry)
    return shown


def rewrite_url(url: str, base: str) -> str:
    """An owner's absolute or relative URL under its FHIR base, moved to the gateway's base."""
    _, marker, rest = url.partition(BASE_PATH)
    if not marker or (rest and not rest.startswith(("/", "?"))):
        return url
    return f"{base}{rest}"


def with_version(location: str, etag: str | None) -> str:
    """``Location`` names the version written (``[type]/[id]/_history/[vid]``), from the ETag
    when the owner named only the resource."""
    version = (etag or "").removeprefix("W/").strip('"')
    if "/_history/" in location or not version.isdigit():
        return location
    return f"{location.rstrip('/')}/_history/{version}"


def rewrite_links(resource: Any, base: str) -> Any:
    """A Bundle's ``link`` urls and entries' ``fullUrl`` point at the gateway (a client pages
    and reads through the one base); nested Bundles (an entry's resource) likewise."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Bundle":
        return resource
    for link in resource.get("link") or []:
        if isinstance(link, dict) and isinstance(link.get("url"), str):
            link["url"] = rewrite_url(link["url"], base)
    for entry in resource.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("fullUrl"), str):
            entry["fullUrl"] = rewrite_url(entry["fullUrl"], base)
        rewrite_links(entry.get("resource"), base)
    return resource
