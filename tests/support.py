"""Helpers shared by the cross-service tests and the load tools: platform tokens through the
identity service's real flows (infra/local/identity_flows.py, re-exported here, every identifier
and token they handle noted for the log scan), forged JWTs, synthetic people.

Every function takes the runner's ``endpoints`` (``<run>/endpoints.json``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import identity_flows
from identity_flows import (
    JWT_BEARER,
    TOKEN_EXCHANGE,
    citizen_token,
    client_assertion,
    client_form,
    exchange_form,
    issued,
    signed_jwt,
    system_token,
    token_response,
)
from stack import api_services, discover_services, fhir_base_service, postgres_bin

from akson_common.identifiers import organisation_number_valid, synthetic_national_id

# The services with an API of their own, which the tests aimed at every service (hostile input,
# schemathesis) reach: every service folder but the web apps and the gateway (the FHIR base in
# front of the others: test_fhir_gateway). A new service is in them by being a folder.
API_SERVICES = tuple(
    s for s in api_services(discover_services()) if s != fhir_base_service(discover_services())
)

_sequence = itertools.count()
# Every personal identifier (national id, HPR number) and token these helpers handed out in this
# process: the log scan (tests/integration/conftest.py) looks for each in every process log.
handed_out: set[str] = set()
__all__ = [
    "JWT_BEARER",
    "TOKEN_EXCHANGE",
    "citizen_token",
    "client_assertion",
    "client_form",
    "exchange_form",
    "issued",
    "system_token",
    "token_response",
]


def new_patient_id() -> str:
    """A fresh synthetic national id, unique within the test run."""
    n = next(_sequence)
    return handed(
        synthetic_national_id(date(1950 + n // 300 % 49, 1 + n // 25 % 12, 1 + n % 25), 0)
    )


def run_secret(endpoints: dict[str, Any], name: str) -> str:
    """One of the runner's generated secrets (``<run>/secrets/tokens.json``), e.g. ``opa_token``
    (the enforcement points' bearer token, the only one OPA answers decisions to)."""
    tokens = json.loads((Path(endpoints["run_dir"]) / "secrets" / "tokens.json").read_text())
    value: str = tokens[name]
    return value


class Postgres:
    """psql as the runner's PostgreSQL superuser (its password from the run's secrets): what
    FerretDB's clients cannot see (indexes, plans, statement statistics, raw counts)."""

    def __init__(self, endpoints: dict[str, Any]) -> None:
        self.psql = str(postgres_bin() / "psql")
        self.port = str(endpoints["ports"]["postgres"])
        self.password = run_secret(endpoints, "postgres_password")

    def query(self, sql: str) -> list[list[str]]:
        answer = subprocess.run(
            [self.psql, "-h", "127.0.0.1", "-p", self.port, "-U", "akson", "-d", "postgres",
             "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        if answer.returncode != 0:
            raise RuntimeError(f"psql: {answer.stderr.strip()}")
        return [row.split("\t") for row in answer.stdout.splitlines() if row]

    def table_or_none(self, database: str, collection: str) -> str | None:
        """The PostgreSQL table FerretDB keeps ``database.collection`` in, None before it has
        one."""
        rows = self.query(
            f"SELECT _jsonb->>'table' FROM {database}._ferretdb_database_metadata "
            f"WHERE _jsonb->>'_id' = '{collection}'"
        )
        return f"{database}.{rows[0][0]}" if rows else None

    def table(self, database: str, collection: str) -> str:
        found = self.table_or_none(database, collection)
        if found is None:
            raise LookupError(f"no table for {database}.{collection}")
        return found

    def count(self, table: str, condition: str = "true") -> int:
        return int(self.query(f"SELECT count(*) FROM {table} WHERE {condition}")[0][0])


def handed(value: str) -> str:
    """Note an identifier or token a test uses (see ``handed_out``); returns it."""
    handed_out.add(value)
    return value


# the identity flows (infra/local/identity_flows.py) note every identifier and token they handle
identity_flows.observe(handed)


# a number shorter than an HPR number (7 digits) is no personal identifier, and would be found
# anywhere (ports, counts); a number after a dot is a fraction of a timestamp
_MIN_IDENTIFIER_DIGITS = 7
_NUMBERS = re.compile(r"(?<![\d.])\d+(?!\d)")
# tokens and secrets are base64url: found wherever a run of these holds them (also inside a
# longer run, e.g. after a URL-encoded "="), by their first _PREFIX characters
_PREFIX = 16
_RUNS = re.compile(rf"[A-Za-z0-9_-]{{{_PREFIX},}}")


def _needles(secret: str) -> Iterable[str]:
    """What betrays ``secret`` in a log: a JWT by its claims or its signature (its header is
    the same in every token), anything else whole."""
    parts = secret.split(".")
    if len(parts) == 3 and all(len(part) >= _PREFIX for part in parts[1:]):
        return parts[1:]
    return [secret]


def log_hits(logs: Iterable[Path], identifiers: Iterable[str]) -> list[tuple[str, int]]:
    """``(log file, line number)`` of every line that holds one of ``identifiers`` (a number
    standing alone, a token or one of its parts as a base64url run). Never says which one: the
    report is no log. Set lookups of what each line holds, so a whole suite's thousands of
    identifiers over a whole run's logs take seconds."""
    numbers: set[str] = set()
    texts: set[str] = set()
    for value in identifiers:
        if value.isdigit():
            if len(value) >= _MIN_IDENTIFIER_DIGITS:
                numbers.add(value)
        elif len(value) >= _PREFIX:
            texts.update(_needles(value))
    by_prefix: dict[str, list[str]] = {}
    for text in texts:
        by_prefix.setdefault(text[:_PREFIX], []).append(text)

    def holds_text(line: str) -> bool:
        for run in _RUNS.findall(line):
            for at in range(len(run) - _PREFIX + 1):
                for text in by_prefix.get(run[at : at + _PREFIX], ()):
                    if run.startswith(text, at):
                        return True
        return False

    hits = []
    for log in logs:
        with log.open(encoding="utf-8", errors="replace") as lines:
            for n, line in enumerate(lines, 1):
                if not numbers.isdisjoint(_NUMBERS.findall(line)) or holds_text(line):
                    hits.append((log.name, n))
    return hits


def mint_token(
    private_key_file: str,
    issuer: str,
    audience: str,
    *,
    subject: str,
    kind: str,
    lifetime: int = 120,
    **claims: Any,
) -> str:
    """A JWT signed with any key at hand (forgeries, upstream tokens with odd claims)."""
    return signed_jwt(
        private_key_file, issuer, subject, audience, lifetime, akson_kind=kind, **claims
    )


def as_organisation_number(name: str) -> str:
    """The name itself when it is an organisation number, else a stable synthetic one for it."""
    if organisation_number_valid(name):
        return name
    serial = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10_000_000
    while True:
        for check in range(10):
            if organisation_number_valid(candidate := f"9{serial:07d}{check}"):
                return candidate
        serial += 1  # the control digit would be 10: no number with this serial


@dataclass(frozen=True)
class PractitionerFacts:
    """A practitioner as master data should hold it; ``unit`` and ``organisation`` may be any
    name (one that is no organisation number stands for a stable synthetic one)."""

    hpr_number: str
    profession: str = "LE"
    unit: str | None = None
    organisation: str | None = None
    municipality: str = "4601"

    @property
    def unit_number(self) -> str | None:
        return None if self.unit is None else as_organisation_number(self.unit)

    @property
    def parent_number(self) -> str | None:
        return None if self.organisation is None else as_organisation_number(self.organisation)


def register_practitioner(endpoints: dict[str, Any], facts: PractitionerFacts) -> None:
    """Register the practitioner (and its unit and organisation) through master data's API."""
    base = endpoints["services"]["masterdata"]["app"]
    handed(facts.hpr_number)
    token = system_token(endpoints, "masterdata", "Practitioner.write Organization.write")
    writer = {"authorization": f"Bearer {token}"}
    unit, parent = facts.unit_number, facts.parent_number
    for number, above in ((parent, None), (unit, parent if parent != unit else None)):
        if number is None:
            continue
        body = {"org_number": number, "name": "Testenhet", "municipality": facts.municipality}
        if above is not None:
            body["parent"] = above
        answer = httpx.put(f"{base}/organisations/{number}", json=body, headers=writer)
        answer.raise_for_status()
    practitioner = {
        "hpr_number": facts.hpr_number,
        "given_name": "Test",
        "family_name": "Syntetisk",
        "status": "active",
        "status_from": "2000-01-01",
        "authorisations": [{"profession": facts.profession, "valid_from": "2000-01-01"}],
        "employments": [] if unit is None else [{"unit": unit, "period_start": "2000-01-01"}],
    }
    answer = httpx.put(
        f"{base}/practitioners/{facts.hpr_number}", json=practitioner, headers=writer
    )
    answer.raise_for_status()


def practitioner_token(
    endpoints: dict[str, Any], facts: PractitionerFacts, audience: str, timeout: float = 20.0
) -> str:
    """Exchange an upstream personnel token once identity's projection (kept from master
    data's events) shows ``facts``: retried until the token carries them or time runs out."""
    unit = facts.unit_number
    expect = {"profession": facts.profession, "unit": unit}
    if unit is not None:
        expect["municipality"] = facts.municipality
        expect["organisation"] = facts.parent_number or unit
    return identity_flows.practitioner_token(
        endpoints, facts.hpr_number, audience, unit=unit, expect=expect, timeout=timeout
    )
