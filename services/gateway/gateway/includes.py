"""Cross-service reads at the one base: ``_include`` / ``_revinclude`` on a search, and
``Patient/{id}/$everything``.

Everything added is fetched from its owner with the caller's own token, as the caller could
have asked for it: the owner's policy decides each one, and what it refuses (or does not
know) is simply not there. Included resources are ``search.mode = include`` and never counted
in ``total``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from akson_common.errors import BadRequest, NotFound
from gateway.owners import BASE_PATH, Owners

Json = dict[str, Any]
MAX_INCLUDED = 200
EVERYTHING_PAGE = 100
MAX_EVERYTHING = 2000
REFERENCE = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class Include:
    source: str  # the type holding the reference
    parameter: str  # its search parameter (patient, subject, result, has-member, ...)
    target: str | None = None

    @classmethod
    def parse(cls, value: str, name: str) -> Include:
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts) or not parts[0][:1].isupper():
            raise BadRequest(f"{name} must be [type]:[parameter] or [type]:[parameter]:[target]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def elements(self) -> tuple[str, ...]:
        """The elements a reference parameter reads (has-member -> hasMember; patient is the
        subject, or an element of its own where a type has one)."""
        head, *rest = self.parameter.split("-")
        element = head + "".join(word.capitalize() for word in rest)
        return (element, "subject") if self.parameter == "patient" else (element,)


def split_query(query: str) -> tuple[list[tuple[str, str]], list[Include], list[Include]]:
    """The query without ``_include``/``_revinclude`` (for the owner), and those."""
    kept, includes, revincludes = [], [], []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "_include":
            includes.append(Include.parse(value, name))
        elif name == "_revinclude":
            revincludes.append(Include.parse(value, name))
        else:
            kept.append((name, value))
    return kept, includes, revincludes


def references(resource: Json, include: Include) -> list[str]:
    found: list[str] = []
    for element in include.elements():
        value = resource.get(element)
        for item in value if isinstance(value, list) else [value]:
            reference = item.get("reference") if isinstance(item, dict) else None
            if isinstance(reference, str) and (match := REFERENCE.match(reference)):
                if include.target in (None, match.group(1)):
                    found.append(reference)
    return found


class Fetcher:
    """Reads and searches at the owners with the caller's headers."""

    def __init__(self, owners: Owners, caller: Mapping[str, str]) -> None:
        self.owners = owners
        self.caller = dict(caller)

    async def read(self, reference: str) -> Json | None:
        resource_type, _, _ = reference.partition("/")
        try:
            owner = await self.owners.owner_of(resource_type)
        except NotFound:  # a type no service of the platform keeps: nothing to include
            return None
        answer = await self.owners.invoker.call(
            owner, "GET", f"{BASE_PATH}/{reference}", headers=self.caller
        )
        body = answer.json()
        return body if answer.status == 200 and isinstance(body, dict) else None

    async def search(self, resource_type: str, query: list[tuple[str, str]]) -> list[Json]:
        """Every page of a search (at most MAX_EVERYTHING resources); nothing if refused."""
        try:
            owner = await self.owners.owner_of(resource_type)
        except NotFound:
            return []
        found: list[Json] = []
        path, page_query = f"{BASE_PATH}/{resource_type}", urlencode(query)
        while len(found) < MAX_EVERYTHING:
            answer = await self.owners.invoker.call(
                owner, "GET", path, query=page_query, headers=self.caller
            )
            bundle = answer.json()
            if answer.status != 200 or not isinstance(bundle, dict):
                break
            found += [
                e["resource"]
                for e in bundle.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            ]
            following = next(
                (
                    link.get("url")
                    for link in bundle.get("link") or []
                    if isinstance(link, dict) and link.get("relation") == "next"
                ),
                None,
            )
            if not isinstance(following, str):
                break
            page_query = urlsplit(following).query
        return found


def _key(resource: Json) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _entry(base: str, resource: Json, mode: str) -> Json:
    return {"fullUrl": f"{base}/{_key(resource)}", "resource": resource, "search": {"mode": mode}}


async def add_includes(
    bundle: Json,
    includes: Iterable[Include],
    revincludes: Iterable[Include],
    fetcher: Fetcher,
    base: str,
) -> Json:
    matches = [
        e["resource"]
        for e in bundle.get("entry") or []
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    seen = {_key(r) for r in matches}
    added: list[Json] = []
    wanted: list[str] = []
    for include in includes:
        for resource in matches:
            if resource.get("resourceType") == include.source:
                wanted += [r for r in references(resource, include) if r not in wanted]
    for reference in wanted:
        if reference in seen or len(added) >= MAX_INCLUDED:
            continue
        resource = await fetcher.read(reference)
        if resource is not None:
            seen.add(_key(resource))
            added.append(resource)
    for revinclude in revincludes:
        for match in matches:
            query = [(revinclude.parameter, _key(match))]
            for resource in await fetcher.search(revinclude.source, query):
                if _key(resource) not in seen and len(added) < MAX_INCLUDED:
                    seen.add(_key(resource))
                    added.append(resource)
    bundle["entry"] = [*(bundle.get("entry") or []), *(_entry(base, r, "include") for r in added)]
    return bundle


def patient_types(statements: Mapping[str, Json]) -> list[str]:
    """The types searchable by ``patient`` (what ``$everything`` gathers), in statement order."""
    types: list[str] = []
    for statement in statements.values():
        for rest in statement.get("rest") or []:
            for resource in rest.get("resource") or []:
                params = {p.get("name") for p in resource.get("searchParam") or []}
                if "patient" in params and resource.get("type") not in types:
                    types.append(str(resource.get("type")))
    return types


async def everything(patient: str, fetcher: Fetcher, base: str) -> Json:
    """``Patient/{id}/$everything``: the patient and every resource of every type searchable by
    patient, each owner asked with the caller's token (what it refuses is left out)."""
    resources: list[Json] = []
    own = await fetcher.read(f"Patient/{patient}")
    if own is not None:
        resources.append(own)
    statements = await fetcher.owners.statements()
    for resource_type in patient_types(statements):
        query = [("patient", f"Patient/{patient}"), ("_count", str(EVERYTHING_PAGE))]
        resources += await fetcher.search(resource_type, query)
        if len(resources) >= MAX_EVERYTHING:
            break
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [_entry(base, r, "match") for r in resources[:MAX_EVERYTHING]],
    }
