"""The parts of the FHIR RESTful API (R4, http.html) every FHIR base answers alike, once, as one
ASGI middleware the app factory installs under ``/fhir/``:

- ``POST [type]/_search`` with a form body is the same search as ``GET [type]?...`` (the form's
  parameters join the query's);
- ``_format`` (``json``, ``application/json``, ``application/fhir+json``) and ``Accept``: JSON is
  all that is served, anything else (XML, Turtle) is 406 with an OperationOutcome;
- ``charset=utf-8`` on every ``application/fhir+json`` answer;
- ``_summary=count`` (and ``_count=0``): the searchset's ``total`` without entries; ``_total``
  (``none`` drops the total; the total always counts only what the caller may see, as the route
  computed it); ``_summary=false`` is the default;
- ``_elements``: only the named top-level elements of each resource (plus ``id``, ``meta``),
  marked SUBSETTED;
- ``Prefer: handling=lenient|strict``: :func:`lenient` tells a route which was asked (strict, the
  default here, refuses unknown search parameters);
- ``If-None-Match`` on a read: 304 without a body when the ETag is the one the caller has.

:func:`strict_parameters` (an app-wide dependency of the factory) refuses, under ``/fhir/``,
query parameters a route does not declare (400), unless ``Prefer: handling=lenient``; a route
that declares none reads its query itself and refuses what it does not know (the journal).
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.dependencies.models import Dependant
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from akson_common.errors import BadRequest
from akson_common.fhir import FHIR_JSON, outcome_response

JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "fhir+json"})
ACCEPTED_MEDIA = frozenset({"*/*", "application/*", "application/json", "application/fhir+json"})
FORM = "application/x-www-form-urlencoded"
MAX_SEARCH_FORM_BYTES = 64 * 1024
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
# elements a subset keeps whatever was asked (the resource stays addressable and versioned)
ALWAYS_KEPT = frozenset({"resourceType", "id", "meta"})

_lenient: ContextVar[bool] = ContextVar("fhir_lenient", default=False)


def lenient() -> bool:
    """Whether the request asked ``Prefer: handling=lenient`` (ignore unknown parameters)."""
    return _lenient.get()


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
# what any FHIR search may carry, whether or not the route pages or pretty-prints
ALWAYS_ACCEPTED = frozenset({"_count", "_pretty"})
_declared: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> frozenset[str]:
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names |= {field.alias for field in current.query_params}
        pending.extend(current.dependencies)
    return frozenset(names)


async def strict_parameters(request: Request) -> None:
    """Unknown query parameters under ``/fhir/`` are refused (FHIR's default ``handling=strict``:
    silently ignoring a filter would answer more than was asked)."""
    if not request.url.path.startswith("/fhir/") or lenient():
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if not isinstance(dependant, Dependant):
        return
    declared = _declared.get(id(route))
    if declared is None:
        declared = _declared.setdefault(id(route), _query_names(dependant))
    if not declared:
        return  # the route reads its query itself
    unknown = sorted(
        {n for n in request.query_params if n not in declared and n not in ALWAYS_ACCEPTED}
    )
    if unknown:
        shown = ", ".join(n if _PLAIN_NAME.fullmatch(n) else "?" for n in unknown)
        raise BadRequest(f"unsupported parameters: {shown} (Prefer: handling=lenient ignores them)")


def preferences(header: str | None) -> dict[str, str]:
    """``Prefer`` (RFC 7240): ``return=minimal, handling=lenient`` -> ``{"return": "minimal",
    "handling": "lenient"}`` (names lower-cased, quotes dropped)."""
    found: dict[str, str] = {}
    for preference in (header or "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name:
            found.setdefault(name.strip().lower(), value.strip().strip('"'))
    return found


def accepts_json(accept: str | None) -> bool:
    if not accept or not accept.strip():
        return True
    for media_range in accept.split(","):
        media, *parameters = (part.strip() for part in media_range.split(";"))
        quality = next((p[2:] for p in parameters if p.lower().startswith("q=")), "1")
        try:
            acceptable = float(quality) > 0
        except ValueError:
            acceptable = False
        if acceptable and media.lower() in ACCEPTED_MEDIA:
            return True
    return False


def _format_is_json(value: str) -> bool:
    return value.split(";")[0].strip().lower() in JSON_FORMATS


class Shaping:
    """What the answer of one request must become (decided from its query)."""

    def __init__(self, query: list[tuple[str, str]]) -> None:
        summaries = [v for n, v in query if n == "_summary"]
        counts = [v for n, v in query if n == "_count"]
        self.count_only = "count" in summaries or counts == ["0"]
        self.unsupported_summary = [v for v in summaries if v not in ("count", "false")]
        self.no_total = [v for n, v in query if n == "_total"] == ["none"]
        elements = ",".join(v for n, v in query if n == "_elements")
        self.elements = {e.strip() for e in elements.split(",") if e.strip()}

    @property
    def reshapes(self) -> bool:
        return self.count_only or self.no_total or bool(self.elements)

    def query(self, query: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The query the route sees: the shaping parameters are answered here."""
        kept = [(n, v) for n, v in query if n not in {"_summary", "_total", "_elements"}]
        if self.count_only:  # the route pages as usual; only the total is kept
            kept = [(n, "1" if n == "_count" else v) for n, v in kept]
        return kept

    def apply(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        if document.get("resourceType") == "Bundle" and document.get("type") == "searchset":
            if self.count_only:
                document.pop("entry", None)
                document["link"] = [
                    link for link in document.get("link") or [] if link.get("relation") == "self"
                ]
            if self.no_total:
                document.pop("total", None)
            for entry in document.get("entry") or []:
                if isinstance(entry, dict) and self.elements:
                    entry["resource"] = self._subset(entry.get("resource"))
            return document
        if self.elements and document.get("resourceType") not in (None, "OperationOutcome"):
            return self._subset(document)
        return document

    def _subset(self, resource: Any) -> Any:
        if not isinstance(resource, dict):
            return resource
        subset = {k: v for k, v in resource.items() if k in self.elements or k in ALWAYS_KEPT}
        meta = dict(subset.get("meta") or {})
        meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
        subset["meta"] = meta
        return subset


class FhirRest:
    """The middleware (see the module's text); other paths pass untouched."""

    def __init__(self, app: ASGIApp, base: str = "/fhir/") -> None:
        self.app = app
        self.base = base

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.base):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        formats = [v for n, v in query if n == "_format"]
        if formats and not all(_format_is_json(v) for v in formats):
            await self._refuse(scope, receive, send, 406, "_format: only JSON is served")
            return
        if not formats and not accepts_json(headers.get("accept")):
            await self._refuse(scope, receive, send, 406, f"Accept: only {FHIR_JSON} is served")
            return
        query = [(n, v) for n, v in query if n != "_format"]
        preferred = preferences(headers.get("prefer"))
        is_lenient = preferred.get("handling") == "lenient"

        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/_search"):
            form = await self._search_form(scope, receive, send, headers)
            if form is None:
                return
            query += form
            path = scope["path"].rstrip("/").removesuffix("/_search")
            scope = {**scope, "method": "GET", "path": path, "raw_path": path.encode()}
            receive = _empty_body

        shaping = Shaping(query)
        if shaping.unsupported_summary and not is_lenient:
            await self._refuse(scope, receive, send, 400, "_summary: only count and false")
            return
        scope = {**scope, "query_string": urlencode(shaping.query(query)).encode()}
        if_none_match = headers.get("if-none-match") if scope["method"] == "GET" else None
        token = _lenient.set(is_lenient)
        try:
            await self.app(scope, receive, _Answer(send, shaping, if_none_match).send)
        finally:
            _lenient.reset(token)

    async def _search_form(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers
    ) -> list[tuple[str, str]] | None:
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in (FORM, ""):
            await self._refuse(scope, receive, send, 415, f"POST _search takes {FORM}")
            return None
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_SEARCH_FORM_BYTES:
                await self._refuse(scope, _empty_body, send, 413, "the search form is too large")
                return None
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            await self._refuse(scope, _empty_body, send, 400, "the search form is not UTF-8")
            return None

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, why: str) -> None:
        response = outcome_response(status, why)
        response.headers["content-type"] = f"{FHIR_JSON}; charset=utf-8"
        await response(scope, receive, send)


async def _empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


class _Answer:
    """The route's answer, reshaped: charset, a 304, a count-only or subsetted body."""

    def __init__(self, send: Send, shaping: Shaping, if_none_match: str | None) -> None:
        self._send = send
        self.shaping = shaping
        self.if_none_match = if_none_match
        self.start: Message | None = None
        self.body = b""
        self.mode = "pass"

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self._started(message)
            return
        if message["type"] != "http.response.body" or self.mode == "pass":
            await self._send(message)
            return
        if self.mode == "not-modified":
            if not message.get("more_body", False):
                await self._send({"type": "http.response.body", "body": b""})
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        body = self.body
        try:
            body = json.dumps(self.shaping.apply(json.loads(body)), separators=(",", ":")).encode()
        except ValueError:
            pass  # not JSON: as it was
        assert self.start is not None
        headers = MutableHeaders(raw=list(self.start["headers"]))
        headers["content-length"] = str(len(body))
        await self._send({**self.start, "headers": headers.raw})
        await self._send({"type": "http.response.body", "body": body})

    async def _started(self, message: Message) -> None:
        headers = MutableHeaders(raw=list(message.get("headers", [])))
        media = headers.get("content-type", "")
        if media.split(";")[0].strip() == FHIR_JSON and "charset" not in media:
            headers["content-type"] = f"{FHIR_JSON}; charset=utf-8"
        status = message["status"]
        etag = headers.get("etag")
        if (
            self.if_none_match
            and status == 200
            and etag
            and (
                self.if_none_match.strip() == "*"
                or etag.removeprefix("W/") in _etags(self.if_none_match)
            )
        ):
            self.mode = "not-modified"
            kept = [
                (k, v)
                for k, v in headers.raw
                if k.lower() not in (b"content-type", b"content-length")
            ]
            await self._send({**message, "status": 304, "headers": kept})
            return
        if (
            status == 200
            and self.shaping.reshapes
            and media.split(";")[0].strip()
            in (
                FHIR_JSON,
                "application/json",
            )
        ):
            self.mode = "reshape"
            self.start = {**message, "headers": headers.raw}
            return
        await self._send({**message, "headers": headers.raw})


__all__ = ["FhirRest", "accepts_json", "lenient", "preferences", "strict_parameters"]
