"""The input guard: nothing a caller sends reaches a route if it could crash a service or poison
a store downstream (PostgreSQL refuses ``\\u0000`` in jsonb; Python's JSON parser recurses).

One pure ASGI middleware, installed by the app factory before routing. It refuses, with 400
(problem+json, or an OperationOutcome under ``/fhir/``) naming the location, never the value:

- text with a C0 control character other than TAB, CR and LF, DEL, an unpaired surrogate or a
  Unicode non-character — in the path (also percent-encoded: ``%00``), the query (names and
  values), header names and values, form fields and every JSON string and object key;
- text that is not UTF-8 (path, query, form, JSON);
- JSON nested deeper than ``max_depth`` (checked on the raw bytes, *before* parsing), numbers
  outside what BSON stores (64-bit integers, finite doubles), ``NaN``/``Infinity``;
- a form with more than ``max_form_fields`` fields;
- a JSON or form body larger than ``max_body_bytes`` (413; other media are the route's).

The same checks are available to code that reads text the guard cannot see as a whole (an
NDJSON import checks each line, a subscription its event): :func:`parse_json`,
:func:`hostile_location`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from akson_common.errors import problem_response
from akson_common.fhir import outcome_response

MAX_DEPTH = 64
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_FORM_FIELDS = 20
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# C0 controls except TAB (09), LF (0A), CR (0D); DEL; surrogates (a lone one survives JSON's
# "\ud800" escape and Python's decoders with surrogateescape); non-characters U+FDD0..U+FDEF
# and the last two code points of every plane.
_NONCHARACTERS = "".join(chr(plane << 16 | low) for plane in range(17) for low in (0xFFFE, 0xFFFF))
HOSTILE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS + "]"
)
_HEADER_HOSTILE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# a JSON string token (escapes skipped whole) or a bracket: enough to measure nesting
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9_.:\-\[\]]{1,64}")


class HostileInput(ValueError):
    """Input refused; ``location`` names where (``query.category``, ``body.content[0]``)."""

    def __init__(self, location: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason
        self.status = status


def hostile(text: str) -> bool:
    return HOSTILE.search(text) is not None


def _name(name: str) -> str:
    """A field name fit to appear in an error message (never a hostile or long one)."""
    return name if _PRINTABLE_NAME.fullmatch(name) else "?"


def json_depth_exceeds(raw: bytes, max_depth: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``max_depth`` (no parsing)."""
    depth = 0
    for token in _JSON_TOKENS.finditer(raw):
        char = token.group()
        if char in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _bounded_int(text: str) -> int:
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("integer out of range")
    return value


def parse_json(raw: bytes, *, location: str = "body", max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON that passes every check, or raise :class:`HostileInput`."""
    if json_depth_exceeds(raw, max_depth):
        raise HostileInput(location, f"JSON nested deeper than {max_depth} levels")
    try:
        value = json.loads(
            raw,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except (ValueError, RecursionError):
        raise HostileInput(location, "not valid JSON, or a number out of range") from None
    where = hostile_location(value, location)
    if where is not None:
        raise HostileInput(where, "a control character, unpaired surrogate or non-character")
    return value


def checked_json(value: Any, *, location: str = "body") -> Any:
    """``value``, parsed by plain ``json.loads`` from text already within ``MAX_DEPTH``, held
    to what :func:`parse_json` allows, or :class:`HostileInput` with the same location and
    reason. A bulk delivery's events are parsed once with the whole body: this checks each
    in one walk, without serialising and parsing it again (the slow path, for the suspects)."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            suspect = HOSTILE.search(item) is not None
        elif isinstance(item, dict):
            suspect = any(HOSTILE.search(str(key)) for key in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            suspect = False
            stack.extend(item)
        elif isinstance(item, bool) or item is None:
            suspect = False
        elif isinstance(item, int):
            suspect = not INT64_MIN <= item <= INT64_MAX
        elif isinstance(item, float):
            suspect = not math.isfinite(item)
        else:
            suspect = True
        if suspect:
            return parse_json(json.dumps(value).encode(), location=location)
    return value


def hostile_location(value: Any, location: str = "body") -> str | None:
    """Where the first hostile string (or object key) in a parsed JSON value is, if any."""
    for where, text in _strings(value, location):
        if hostile(text):
            return where
    return None


def _strings(value: Any, location: str) -> Iterator[tuple[str, str]]:
    stack: list[tuple[str, Any]] = [(location, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                key_text = str(key)
                if hostile(key_text):
                    yield f"a key in {where}", key_text
                    continue
                stack.append((f"{where}.{_name(key_text)}", child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(item))


def _media_type(headers: dict[bytes, bytes]) -> str:
    return headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def check_path(scope: Scope) -> None:
    raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode()
    try:
        decoded = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise HostileInput("path", "not UTF-8") from None
    if hostile(decoded) or hostile(scope.get("path", "")):
        raise HostileInput("path", "a control character, unpaired surrogate or non-character")


def check_pairs(text: str, kind: str, *, max_fields: int | None = None) -> None:
    # bytes that are not UTF-8 become lone surrogates here, refused below with the field's name
    pairs = parse_qsl(
        text,
        keep_blank_values=True,
        encoding="utf-8",
        errors="surrogateescape",
        max_num_fields=None,
    )
    if max_fields is not None and len(pairs) > max_fields:
        raise HostileInput(kind, f"more than {max_fields} fields")
    for name, value in pairs:
        if hostile(name):
            raise HostileInput(f"a {kind} field name", "a control character or non-character")
        if hostile(value):
            raise HostileInput(
                f"{kind}.{_name(name)}",
                "a control character, unpaired surrogate, non-character or not UTF-8",
            )


def check_headers(headers: Sequence[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if _HEADER_HOSTILE.search(name) or _HEADER_HOSTILE.search(value):
            shown = _name(name.decode("latin-1"))
            raise HostileInput(f"header.{shown}", "a control character")


class InputGuard:
    """The ASGI middleware (see the module docstring). ``unchecked_bodies``: path prefixes whose
    bodies the route checks itself (subscriptions drop a bad event instead of a 400 Dapr would
    retry; audit's intake quarantines an entry instead of refusing OPA's whole batch)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        fhir_base: str = "/fhir/",
        unchecked_bodies: Sequence[str] = (),
        max_depth: int = MAX_DEPTH,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_form_fields: int = MAX_FORM_FIELDS,
    ) -> None:
        self.app = app
        self.fhir_base = fhir_base
        self.unchecked_bodies = tuple(unchecked_bodies)
        self.max_depth = max_depth
        self.max_body_bytes = max_body_bytes
        self.max_form_fields = max_form_fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_path(scope)
            check_pairs(scope.get("query_string", b"").decode("latin-1"), "query")
            check_headers(scope.get("headers", []))
            receive = await self._checked_body(scope, receive)
        except HostileInput as refused:
            await self._refuse(scope, refused, send)
            return
        await self.app(scope, receive, send)

    async def _checked_body(self, scope: Scope, receive: Receive) -> Receive:
        headers = dict(scope.get("headers", []))
        path: str = scope.get("path", "")
        media_type = _media_type(headers)
        encoded = headers.get(b"content-encoding", b"identity").strip().lower() != b"identity"
        form = media_type == "application/x-www-form-urlencoded"
        if (
            scope.get("method") in ("GET", "HEAD", "OPTIONS")
            or path.startswith(self.unchecked_bodies)
            or encoded  # compressed: the route decompresses (bounded) and checks
            or not (_is_json(media_type) or form)
        ):
            return receive  # other media (NDJSON imports, PDFs): the route bounds and checks
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise HostileInput("body", f"larger than {self.max_body_bytes} bytes", 413)
        body = await self._read(receive)
        if body:
            if form:
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    raise HostileInput("form", "not UTF-8") from None
                check_pairs(text, "form", max_fields=self.max_form_fields)
            else:
                parse_json(body, max_depth=self.max_depth)
        return _replay(body, receive)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HostileInput("body", "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HostileInput("body", f"larger than {self.max_body_bytes} bytes", 413)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, scope: Scope, refused: HostileInput, send: Send) -> None:
        path = scope.get("path", "")
        instance = path if not hostile(path) else "/"
        detail = f"{refused.location}: {refused.reason}"
        if path.startswith(self.fhir_base):
            response = outcome_response(refused.status, detail, locations=[refused.location])
        else:
            title = "Content Too Large" if refused.status == 413 else "Bad Request"
            slug = "too-large" if refused.status == 413 else "hostile-input"
            response = problem_response(
                refused.status,
                title,
                detail,
                instance,
                slug,
                errors=[{"loc": refused.location.split("."), "msg": refused.reason}],
            )

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        await response(scope, no_body, send)


def _replay(body: bytes, original: Receive) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # after the body: the connection's own events (a disconnect, when it comes)
        return await original()

    return receive


__all__ = [
    "HOSTILE",
    "MAX_DEPTH",
    "HostileInput",
    "InputGuard",
    "hostile",
    "hostile_location",
    "json_depth_exceeds",
    "parse_json",
]
