"""The real stack for integration tests: redis, FerretDB, OPA, every app and its daprd sidecar.

Started once per test session by the same runner as `make up`, in its own run folder and on
its own free ports, and stopped afterwards (leaving no process behind). Tokens come from the
identity service through its real flows: client credentials for systems, token exchange of an
upstream token for practitioners (registered in master data first) and citizens.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from stack import ROOT, Stack, mint_upstream

from akson_common.identifiers import organisation_number_valid
from tests.support import client_assertion


@dataclass
class Platform:
    stack: Stack
    endpoints: dict[str, Any]
    tokens: dict[str, str]
    mongo: MongoClient[dict[str, Any]]
    _registered: set[tuple[str, str, str | None, str | None, str]] = field(default_factory=set)

    def url(self, service: str) -> str:
        return str(self.endpoints["services"][service]["app"])

    def token(self, audience: str, *, subject: str, kind: str, **claims: Any) -> str:
        """A platform token for ``audience`` through identity's real flows.

        Systems get the requested ``scope`` as the runner's test client; a practitioner is
        first registered in master data with the given profession, unit and organisation (a
        unit that is no organisation number stands for a stable synthetic one) and waited for
        in identity's projection; a citizen exchanges an upstream token for ``subject``.
        """
        if kind == "system":
            return self.client_token(audience, str(claims.get("scope", "")))
        if kind == "citizen":
            return self.exchange(mint_upstream(self.endpoints, "citizen", subject), audience)
        if kind != "practitioner":
            raise ValueError(f"no flow issues tokens for kind {kind!r}")
        hpr = str(claims.get("hpr_number") or subject.removeprefix("hpr:"))
        unit = self.practitioner_exists(
            hpr,
            profession=str(claims.get("profession", "LE")),
            unit=claims.get("unit"),
            organisation=claims.get("organisation"),
            municipality=str(claims.get("municipality", "4601")),
        )
        upstream = mint_upstream(self.endpoints, "personnel", hpr, unit=unit)
        return self.exchange(upstream, audience)

    def token_response(self, form: dict[str, str]) -> httpx.Response:
        return httpx.post(self.endpoints["identity"]["token_endpoint"], data=form, timeout=10.0)

    def client_form(
        self, audience: str, scope: str, assertion: str | None = None
    ) -> dict[str, str]:
        client = self.endpoints["test_client"]
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion
            or client_assertion(
                client["private_key_file"],
                client["client_id"],
                self.endpoints["identity"]["token_endpoint"],
            ),
            "audience": audience,
            "scope": scope,
        }

    def client_token(self, audience: str, scope: str) -> str:
        return _issued(self.token_response(self.client_form(audience, scope)))

    def exchange_form(self, subject_token: str, audience: str) -> dict[str, str]:
        return {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": subject_token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "audience": audience,
        }

    def exchange(self, subject_token: str, audience: str) -> str:
        return _issued(self.token_response(self.exchange_form(subject_token, audience)))

    def practitioner_exists(
        self,
        hpr: str,
        *,
        profession: str,
        unit: Any,
        organisation: Any,
        municipality: str,
    ) -> str | None:
        """Register the practitioner (and its unit) in master data unless it already is, wait
        for identity's projection; return the unit's organisation number."""
        unit_number = None if unit is None else as_organisation_number(str(unit))
        parent = None if organisation is None else as_organisation_number(str(organisation))
        key = (hpr, profession, unit_number, parent, municipality)
        if key in self._registered:
            return unit_number
        base = self.url("masterdata")
        writer = {
            "authorization": "Bearer "
            + self.client_token("masterdata", "Practitioner.write Organization.write")
        }
        organisations = [(parent, None), (unit_number, parent if parent != unit_number else None)]
        for number, above in organisations:
            if number is None:
                continue
            body = {"org_number": number, "name": "Testenhet", "municipality": municipality}
            if above is not None:
                body["parent"] = above
            answer = httpx.put(f"{base}/organisations/{number}", json=body, headers=writer)
            assert answer.status_code == 200, answer.text
        practitioner = {
            "hpr_number": hpr,
            "given_name": "Test",
            "family_name": "Syntetisk",
            "status": "active",
            "status_from": "2000-01-01",
            "authorisations": [{"profession": profession, "valid_from": "2000-01-01"}],
            "employments": []
            if unit_number is None
            else [{"unit": unit_number, "period_start": "2000-01-01"}],
        }
        answer = httpx.put(f"{base}/practitioners/{hpr}", json=practitioner, headers=writer)
        assert answer.status_code == 200, answer.text
        identity = self.db("identity")

        def projected() -> bool:
            facts = identity.practitioners.find_one({"_id": hpr})
            return (
                facts is not None
                and facts["status"] == "active"
                and profession in facts["professions"]
                and (unit_number is None or unit_number in facts["units"])
                and (unit_number is None or identity.organisations.find_one({"_id": unit_number}))
            )

        eventually(projected)
        self._registered.add(key)
        return unit_number

    def db(self, service: str) -> Any:
        return self.mongo[f"akson_{service}"]

    def restart(self, *names: str) -> None:
        for name in names:
            self.stack.stop(name)
        for name in names:
            self.stack.start(name)


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    run_dir = ROOT / ".run" / f"test-{uuid.uuid4().hex[:8]}"
    stack = Stack(run_dir=run_dir)
    stack.up()
    tokens = json.loads((run_dir / "secrets" / "tokens.json").read_text())
    mongo: MongoClient[dict[str, Any]] = MongoClient(stack.endpoints["mongo"]["url"])
    try:
        yield Platform(stack, stack.endpoints, tokens, mongo)
    finally:
        mongo.close()
        stack.down()
        leftovers = [
            name
            for name, process in stack.processes.items()
            if process.popen is not None and process.popen.poll() is None
        ]
        assert not leftovers, f"still running after down: {leftovers}"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def _issued(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


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


def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Poll until ``check`` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout} s"
    return value
