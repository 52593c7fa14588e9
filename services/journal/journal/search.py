"""Search parameters and Bundles (pure functions: no I/O).

Supported on every type: ``patient`` (``Patient/<id>`` or ``<id>``; ``subject`` is the same),
``_id`` (comma-separated), ``identifier`` (``[system|]value``), ``category`` and ``type``
(``[system|]code``), ``date`` and ``_lastUpdated`` (repeatable, prefixes ``eq``, ``ge``, ``gt``,
``le``, ``lt``; a date or a dateTime), ``status``, ``_sort`` (``-date``, the only order),
``_count`` (default 20, capped at 100) and ``_cursor`` (opaque, from a ``next`` link). Any other
parameter is refused (400): silently ignoring a filter would return more than was asked for —
unless the caller asked for exactly that (``Prefer: handling=lenient``). ``_summary``,
``_total``, ``_elements`` and ``_format`` are answered for every FHIR base by
:mod:`akson_common.fhir_rest`.
"""

from __future__ import annotations

import base64
import binascii
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from akson_common import fhir
from akson_common.errors import BadRequest
from akson_common.etags import etag
from journal.kinds import ENTERED_IN_ERROR, KINDS, normalise_instant

DEFAULT_COUNT = 20
MAX_COUNT = 100
RESOURCE_TYPES = tuple(KINDS)  # every type the journal keeps
PARAMETERS = frozenset(
    {
        "patient",
        "subject",
        "category",
        "type",
        "date",
        "status",
        "_id",
        "identifier",
        "_lastUpdated",
        "_sort",
        "_count",
        "_cursor",
    }
)
# the one order a search pages in (keyset on the clinical date, newest first)
SORTS = frozenset({"-date"})
PREFIXES = ("eq", "ge", "gt", "le", "lt")
# normalised instants (YYYY-MM-DDTHH:MM:SSZ) compare as strings
COMPARE: dict[str, Callable[[str, str], bool]] = {
    "$gte": operator.ge,
    "$gt": operator.gt,
    "$lte": operator.le,
    "$lt": operator.lt,
}
CURSOR = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\|[0-9a-f-]{36}$")

Json = dict[str, Any]


@dataclass(frozen=True)
class SearchParameters:
    patient: str | None = None
    category: str | None = None
    type_code: str | None = None
    status: str | None = None
    date_ranges: tuple[tuple[str, str], ...] = ()  # (mongo operator, normalised instant)
    updated_ranges: tuple[tuple[str, str], ...] = ()  # on meta.lastUpdated, likewise
    ids: frozenset[str] = frozenset()
    identifier: tuple[str | None, str] | None = None  # (system or None: any, value)
    count: int = DEFAULT_COUNT
    cursor: str | None = None
    kept: tuple[tuple[str, str], ...] = field(default=())  # for links, without _cursor

    def matches(self, resource_type: str, entry: Json) -> bool:
        """Whether a stored document (see :mod:`journal.store`) meets the parameters."""
        if entry.get("type") != resource_type:
            return False
        if self.category and entry.get("category") != self.category:
            return False
        if self.type_code and entry.get("type_code") != self.type_code:
            return False
        status = entry.get("status")
        if (status != self.status) if self.status else (status == ENTERED_IN_ERROR):
            return False
        if self.ids and entry.get("_id") not in self.ids:
            return False
        if self.identifier is not None and not _has_identifier(entry, *self.identifier):
            return False
        when = entry.get("date") or ""
        if not all(COMPARE[op](when, bound) for op, bound in self.date_ranges):
            return False
        updated = ((entry.get("resource") or {}).get("meta") or {}).get("lastUpdated") or ""
        return all(COMPARE[op](updated, bound) for op, bound in self.updated_ranges)


def _has_identifier(entry: Json, system: str | None, value: str) -> bool:
    identifiers = (entry.get("resource") or {}).get("identifier") or []
    return any(
        isinstance(i, dict) and i.get("value") == value and system in (None, i.get("system"))
        for i in identifiers
    )


def _identifier(value: str) -> tuple[str | None, str]:
    system, bar, code = value.rpartition("|")
    return (system if bar else None), code


def _code(value: str) -> str:
    return value.rsplit("|", 1)[-1]


# HL7 result categories, searched as the Akson categories results are kept under
RESULT_CATEGORIES = {
    "http://terminology.hl7.org/CodeSystem/v2-0074|LAB": "lab_result",
    "http://terminology.hl7.org/CodeSystem/v2-0074|RAD": "radiology",
    "http://terminology.hl7.org/CodeSystem/observation-category|laboratory": "lab_result",
    "http://terminology.hl7.org/CodeSystem/observation-category|imaging": "radiology",
}


def _category(value: str) -> str:
    return RESULT_CATEGORIES.get(value) or _code(value)


def _day_after(day: str) -> str:
    following = date.fromisoformat(day) + timedelta(days=1)
    return datetime.combine(following, datetime.min.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def date_bounds(value: str) -> list[tuple[str, str]]:
    """``ge2024-01-01`` → ``[("$gte", "2024-01-01T00:00:00Z")]``; a bare date means that day."""
    prefix, moment = ("eq", value)
    if value[:2] in PREFIXES:
        prefix, moment = value[:2], value[2:]
    start = normalise_instant(moment)
    if start is None:
        raise BadRequest("date must be a FHIR date or dateTime, optionally with a prefix")
    whole_day = len(moment) == 10
    end = _day_after(moment) if whole_day else start
    if prefix == "eq":
        return [("$gte", start), ("$lt", end)] if whole_day else [("$gte", start), ("$lte", end)]
    if prefix == "ge":
        return [("$gte", start)]
    if prefix == "gt":
        return [("$gte", end)] if whole_day else [("$gt", start)]
    if prefix == "le":
        return [("$lt", end)] if whole_day else [("$lte", start)]
    return [("$lt", start)]


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(sort_key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """A cursor only moves the keyset position; the access filter applies on every page."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = ""
    if not CURSOR.match(key):
        raise BadRequest("_cursor is not one this server issued")
    return key


def parse_search(items: Sequence[tuple[str, str]], *, lenient: bool = False) -> SearchParameters:
    """``lenient`` (``Prefer: handling=lenient``): unknown parameters are ignored, not refused.
    ``subject`` is ``patient`` (every type here has its patient as subject)."""
    unknown = sorted({name for name, _ in items if name not in PARAMETERS})
    if unknown and not lenient:
        raise BadRequest(f"unsupported search parameters: {', '.join(unknown)}")
    items = [("patient" if n == "subject" else n, v) for n, v in items if n in PARAMETERS]
    values: dict[str, list[str]] = {}
    for name, value in items:
        values.setdefault(name, []).append(value)
    for name, given in values.items():
        if name not in ("date", "_lastUpdated") and len(given) > 1:
            raise BadRequest(f"{name} may be given once")
        if any(len(v) > 200 for v in given):
            raise BadRequest(f"{name} is too long")

    def one(name: str) -> str | None:
        return values[name][0] if name in values and values[name][0] != "" else None

    patient = one("patient")
    count = DEFAULT_COUNT
    if (raw_count := one("_count")) is not None:
        if not raw_count.isdigit() or int(raw_count) < 1:
            raise BadRequest("_count must be a positive integer")
        count = min(int(raw_count), MAX_COUNT)
    ranges: list[tuple[str, str]] = []
    for value in values.get("date", []):
        ranges.extend(date_bounds(value))
    updated: list[tuple[str, str]] = []
    for value in values.get("_lastUpdated", []):
        updated.extend(date_bounds(value))
    if (order := one("_sort")) is not None and order not in SORTS:
        raise BadRequest(f"_sort: this server sorts by {', '.join(sorted(SORTS))} only")
    ids = frozenset(i.strip() for i in (one("_id") or "").split(",") if i.strip())
    cursor = one("_cursor")
    return SearchParameters(
        patient=patient.removeprefix("Patient/") if patient else None,
        category=_category(c) if (c := one("category")) else None,
        type_code=_code(t) if (t := one("type")) else None,
        status=one("status"),
        date_ranges=tuple(ranges),
        updated_ranges=tuple(updated),
        ids=ids,
        identifier=_identifier(i) if (i := one("identifier")) else None,
        count=count,
        cursor=decode_cursor(cursor) if cursor else None,
        kept=tuple((n, v) for n, v in items if n not in {"_cursor", "_count"}),
    )


def searchset(
    base: str,
    resource_type: str,
    resources: Sequence[Json],
    *,
    total: int,
    self_link: str,
    next_link: str | None,
) -> Json:
    links = [{"relation": "self", "url": self_link}]
    if next_link:
        links.append({"relation": "next", "url": next_link})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{resource_type}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }


def history_bundle(base: str, versions: Sequence[Json]) -> Json:
    """``versions``: each ``{"resource", "version", "updated_at", "method"}``, newest first."""
    return {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(versions),
        "entry": [
            {
                "fullUrl": f"{base}/{v['resource']['resourceType']}/{v['resource']['id']}",
                "resource": v["resource"],
                "request": {
                    "method": v["method"],
                    "url": f"{v['resource']['resourceType']}/{v['resource']['id']}",
                },
                "response": {
                    "status": "201 Created" if v["method"] == "POST" else "200 OK",
                    "etag": etag(v["version"]),
                    "lastModified": v["updated_at"],
                },
            }
            for v in versions
        ],
    }


def collection(base: str, resources: Sequence[Json], *, timestamp: str) -> Json:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timestamp,
        "entry": [
            {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
        ],
    }


def capability_statement(base: str, date: str) -> Json:
    searches = [
        ("patient", "reference"),
        ("subject", "reference"),
        ("_id", "token"),
        ("identifier", "token"),
        ("_lastUpdated", "date"),
        ("category", "token"),
        ("type", "token"),
        ("date", "date"),
        ("status", "token"),
        ("_count", "number"),
    ]
    interactions = ["read", "vread", "update", "delete", "history-instance", "create"]
    conditions = {
        "conditionalCreate": True,
        "conditionalUpdate": True,
        "conditionalRead": "not-match",
    }
    return fhir.capability_statement(
        "Akson journal (validated with fhir.resources R4B models, wire-compatible with R4 for "
        "these types); DELETE marks entered-in-error",
        base,
        [
            fhir.resource_capability(
                name,
                [*interactions, "search-type"],
                searches,
                versioning="versioned-update",
                readHistory=True,
                updateCreate=False,
                conditionalDelete="not-supported",
                **conditions,
            )
            for name in RESOURCE_TYPES
        ],
        [
            {
                "name": "summary",
                "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary",
            },
            {
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            },
        ],
        date=date,
    )
