"""batch and transaction Bundles at the one base (``POST /fhir/R4``).

Every entry is a request of its own to the service owning its type, with the caller's token:
the owner asks the policy for it, as for any request; the gateway decides nothing.

- **batch**: the entries one after the other, each with its own status (``batch-response``).
- **transaction** (all or nothing, on stores without multi-document transactions: a staged
  commit with compensation). First every entry is checked: its form, its type's owner, and each
  write is validated by its owner (``[type]/$validate``: the resource, and the policy's answer
  for that write; nothing stored). One refusal fails the transaction before anything is applied,
  naming only that entry. Then the entries are applied in the specification's order (DELETE,
  POST, PUT, GET), ``urn:uuid:`` references to entries created on the way replaced by their
  ids. If one fails, what was applied is undone in reverse order, each with the caller's token:
  a create is deleted, an update or a delete is restored (the prior content written back as a
  new version). The answer is then the failing entry's status. Not isolated: a concurrent
  reader may see an applied entry before it is undone; a gateway that dies half-way leaves what
  it applied (the owners' own version histories show it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from akson_common.errors import BadRequest, Problem
from akson_common.fhir import FHIR_JSON
from gateway.owners import BASE_PATH, Answer, Owners, rewrite_url, with_version

log = logging.getLogger(__name__)

Json = dict[str, Any]
WRITES = ("POST", "PUT")
# the specification's processing order of a transaction's entries (http.html#trules)
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
# what of the caller's request each entry carries (its own conditions come from the entry)
CALLER_HEADERS = (
    "authorization",
    "prefer",
    "akson-purpose",
    "akson-emergency-reason",
    "x-request-id",
)


class TransactionFailed(Problem):
    """A transaction entry failed: nothing of the transaction is kept. ``status`` is the
    failing entry's (set per instance)."""

    status, title, type_slug = 400, "Transaction failed", "transaction-failed"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status  # type: ignore[misc]


class NotUndone(Problem):
    status, title, type_slug = 500, "Transaction not undone", "transaction-not-undone"


@dataclass
class Entry:
    index: int
    method: str
    resource_type: str
    path: str  # under the base, e.g. /fhir/R4/Observation/1
    query: str
    resource: Json | None
    full_url: str | None
    conditions: dict[str, str]

    @property
    def resource_id(self) -> str | None:
        parts = self.path.removeprefix(f"{BASE_PATH}/").split("/")
        return parts[1] if len(parts) > 1 and not parts[1].startswith(("$", "_")) else None


@dataclass
class Applied:
    """An applied entry and how to undo it."""

    entry: Entry
    created: str | None = None  # "Type/id" of a created resource
    prior: Json | None = None  # the content before an update or a delete
    etag: str | None = None  # the version the entry wrote


@dataclass
class Run:
    owners: Owners
    caller: dict[str, str]
    base: str
    created: dict[str, str] = field(default_factory=dict)  # fullUrl -> "Type/id"

    async def send(
        self,
        entry: Entry,
        method: str | None = None,
        path: str | None = None,
        *,
        resource: Json | None = None,
        conditions: Mapping[str, str] | None = None,
        query: str | None = None,
    ) -> Answer:
        owner = await self.owners.owner_of(entry.resource_type, _operation(path or entry.path))
        headers = {**self.caller, **(entry.conditions if conditions is None else conditions)}
        body = None
        if resource is not None:
            body = json.dumps(resource).encode()
            headers["content-type"] = FHIR_JSON
        return await self.owners.invoker.call(
            owner,
            method or entry.method,
            path or entry.path,
            query=entry.query if query is None else query,
            headers=headers,
            body=body,
        )


def _operation(path: str) -> str | None:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("$") else None


def caller_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() in CALLER_HEADERS}


def parse_bundle(document: Any, base: str, max_entries: int) -> tuple[str, list[Entry]]:
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base takes a Bundle")
    kind = document.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest("the Bundle's type must be batch or transaction")
    raw = document.get("entry") or []
    if not isinstance(raw, list) or len(raw) > max_entries:
        raise BadRequest(f"a Bundle holds at most {max_entries} entries")
    return str(kind), [parse_entry(index, item, base) for index, item in enumerate(raw)]


def parse_entry(index: int, item: Any, base: str) -> Entry:
    where = f"entry {index}"
    request = item.get("request") if isinstance(item, dict) else None
    if not isinstance(request, dict):
        raise BadRequest(f"{where}: request is required")
    method = str(request.get("method", "")).upper()
    if method not in ORDER:
        raise BadRequest(f"{where}: request.method must be GET, POST, PUT or DELETE")
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}: request.url is required")
    if url.startswith(("http://", "https://")):
        if not url.startswith(f"{base}/"):
            raise BadRequest(f"{where}: request.url is not under this base")
        url = url.removeprefix(f"{base}/")
    parts = urlsplit(url.lstrip("/"))
    segments = parts.path.split("/")
    resource_type = segments[0]
    if not resource_type[:1].isupper() or not resource_type.isalpha():
        raise BadRequest(f"{where}: request.url must start with a resource type")
    resource = item.get("resource")
    if method in WRITES:
        if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
            raise BadRequest(f"{where}: a {method} carries a resource of the url's type")
    elif resource is not None:
        raise BadRequest(f"{where}: a {method} carries no resource")
    if method in ("PUT", "DELETE") and (len(segments) != 2 or not segments[1]):
        raise BadRequest(f"{where}: a {method} names one resource ([type]/[id])")
    if method == "PUT" and resource is not None and resource.get("id") not in (None, segments[1]):
        raise BadRequest(f"{where}: the resource id differs from request.url")
    conditions = {
        header: str(request[name])
        for name, header in (
            ("ifMatch", "if-match"),
            ("ifNoneMatch", "if-none-match"),
            ("ifNoneExist", "if-none-exist"),
        )
        if request.get(name)
    }
    full_url = item.get("fullUrl")
    return Entry(
        index=index,
        method=method,
        resource_type=resource_type,
        path=f"{BASE_PATH}/{parts.path}",
        query=parts.query,
        resource=resource,
        full_url=full_url if isinstance(full_url, str) else None,
        conditions=conditions,
    )


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def response_entry(answer: Answer, base: str) -> Json:
    """A batch/transaction-response entry from an owner's answer."""
    response: Json = {"status": status_line(answer.status)}
    headers = answer.headers
    if "location" in headers:
        response["location"] = with_version(
            rewrite_url(headers["location"], base), headers.get("etag")
        )
    if "etag" in headers:
        response["etag"] = headers["etag"]
    if "last-modified" in headers:
        response["lastModified"] = headers["last-modified"]
    entry: Json = {"response": response}
    body = answer.json()
    if isinstance(body, dict) and body.get("resourceType"):
        if body["resourceType"] == "OperationOutcome":
            response["outcome"] = body
        else:
            entry["resource"] = body
            if isinstance(body.get("id"), str):
                entry["fullUrl"] = f"{base}/{body['resourceType']}/{body['id']}"
    return entry


async def batch(run: Run, entries: list[Entry]) -> Json:
    """Each entry on its own; an entry's failure is its own status."""
    results = []
    for entry in entries:
        try:
            answer = await run.send(entry, resource=entry.resource)
        except Problem as problem:  # its owner unknown or unreachable: this entry only
            results.append(_problem_entry(problem))
            continue
        results.append(response_entry(answer, run.base))
    return {"resourceType": "Bundle", "type": "batch-response", "entry": results}


def _problem_entry(problem: Problem) -> Json:
    return {
        "response": {
            "status": status_line(problem.status),
            "outcome": {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "exception", "diagnostics": problem.detail}
                ],
            },
        }
    }


async def transaction(run: Run, entries: list[Entry]) -> Json:
    await _validate(run, entries)
    applied: list[Applied] = []
    results: dict[int, Json] = {}
    for entry in sorted(entries, key=lambda e: (ORDER[e.method], e.index)):
        try:
            done, answer = await _apply(run, entry)
        except Problem as problem:
            await _undo(run, applied, entry.index)
            raise TransactionFailed(
                problem.status,
                f"entry {entry.index} failed ({problem.detail}); nothing of the transaction "
                "was kept",
            ) from None
        if answer.status >= 400:
            await _undo(run, applied, entry.index)
            raise TransactionFailed(
                answer.status,
                f"entry {entry.index} failed ({status_line(answer.status)}); nothing of the "
                "transaction was kept",
            )
        if done is not None:
            applied.append(done)
        results[entry.index] = response_entry(answer, run.base)
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [results[e.index] for e in entries],
    }


async def _validate(run: Run, entries: list[Entry]) -> None:
    """Every entry's owner exists; every write is valid and allowed (its owner's $validate).
    A refusal names only the refused entry."""
    for entry in entries:
        try:
            await run.owners.owner_of(entry.resource_type)
        except Problem as problem:
            raise TransactionFailed(
                problem.status, f"entry {entry.index}: {problem.detail}"
            ) from None
        if entry.method not in WRITES or entry.resource is None:
            continue
        mode = "update" if entry.method == "PUT" else "create"
        resource = {**entry.resource, **({"id": entry.resource_id} if mode == "update" else {})}
        answer = await run.send(
            entry,
            "POST",
            f"{BASE_PATH}/{entry.resource_type}/$validate",
            resource=resource,
            conditions={},
            query=f"mode={mode}",
        )
        if answer.status != 200:
            status = answer.status if answer.status >= 400 else 400
            raise TransactionFailed(
                status,
                f"entry {entry.index} was refused ({status_line(answer.status)}); nothing of "
                "the transaction was applied",
            )


def _resolve(value: Any, created: Mapping[str, str]) -> Any:
    """``urn:uuid:`` references to entries created earlier in the transaction -> their ids."""
    if isinstance(value, dict):
        return {
            k: (
                created.get(v, v)
                if k == "reference" and isinstance(v, str)
                else _resolve(v, created)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve(v, created) for v in value]
    return value


async def _apply(run: Run, entry: Entry) -> tuple[Applied | None, Answer]:
    resource = _resolve(entry.resource, run.created) if entry.resource is not None else None
    prior = None
    if entry.method in ("PUT", "DELETE"):
        current = await run.send(entry, "GET", conditions={}, query="")
        if current.status == 200 and isinstance(current.json(), dict):
            prior = current.json()
    answer = await run.send(entry, resource=resource)
    if answer.status >= 400 or entry.method == "GET":
        return None, answer
    done = Applied(entry, prior=prior, etag=answer.headers.get("etag"))
    if entry.method == "POST" and answer.status == 201:
        created = _created(answer, entry.resource_type)
        done.created = created
        if entry.full_url and created:
            run.created[entry.full_url] = created
    elif entry.method == "POST":
        return None, answer  # a conditional create that found its resource: nothing to undo
    return done, answer


def _created(answer: Answer, resource_type: str) -> str | None:
    location = answer.headers.get("location", "")
    tail = location.split(f"{BASE_PATH}/", 1)[-1].split("/_history/")[0]
    if tail.startswith(f"{resource_type}/"):
        return tail
    body = answer.json()
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        return f"{resource_type}/{body['id']}"
    return None


async def _undo(run: Run, applied: list[Applied], failed_at: int) -> None:
    """Undo what was applied, newest first; every step is tried, a failed one is reported."""
    failures = 0
    for done in reversed(applied):
        try:
            answer = await _undo_one(run, done)
        except Problem:
            failures += 1
            continue
        if answer is None or answer.status >= 400:
            failures += 1
    if failures:
        log.warning("a transaction failed and %d of its applied entries were not undone", failures)
        raise NotUndone(
            f"entry {failed_at} failed, and {failures} of the entries applied before it could "
            "not be undone"
        )


async def _undo_one(run: Run, done: Applied) -> Answer | None:
    entry = done.entry
    match = {"if-match": done.etag} if done.etag else {}
    if done.created is not None:
        return await run.send(
            entry, "DELETE", f"{BASE_PATH}/{done.created}", conditions=match, query=""
        )
    if done.prior is None:
        return None
    restored = {k: v for k, v in done.prior.items() if k != "meta"}
    return await run.send(entry, "PUT", resource=restored, conditions=match, query="")
