"""The real stack for integration tests: redis, FerretDB, OPA, every app and its daprd sidecar.

Started once per test session by the same runner as `make up`, in its own run folder and on
its own free ports, and stopped afterwards (leaving no process behind). Tokens come from the
identity service through its real flows: client credentials for systems, token exchange of an
upstream token for practitioners (registered in master data first) and citizens.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from pymongo import MongoClient
from stack import ROOT, Stack

from tests.support import (
    PractitionerFacts,
    as_organisation_number,
    citizen_token,
    client_form,
    exchange_form,
    handed,
    handed_out,
    issued,
    log_hits,
    practitioner_token,
    register_practitioner,
    system_token,
    token_response,
)


@dataclass
class Platform:
    stack: Stack
    endpoints: dict[str, Any]
    tokens: dict[str, str]
    mongo: MongoClient[dict[str, Any]]
    _registered: set[PractitionerFacts] = field(default_factory=set)
    # the session-end log scan must have had more than this many identifiers to look for
    # (tests/integration/test_log_scan.py sets it, so every whole-suite run checks; a whole
    # suite hands out hundreds)
    log_scan_minimum: int = 0

    def url(self, service: str) -> str:
        return str(self.endpoints["services"][service]["app"])

    def token(self, audience: str, *, subject: str, kind: str, **claims: Any) -> str:
        """A platform token for ``audience`` through identity's real flows.

        Systems get the requested ``scope`` as the runner's test client; a practitioner is
        first registered in master data with the given profession, unit and organisation and
        its token exchanged once identity's projection has it; a citizen exchanges an upstream
        token for ``subject``. Other claims cannot be asked for: identity decides them.
        """
        if kind == "system":
            # client="nav" | "child_welfare" | "lab" | "auditor": one of the runner's dev clients
            dev = claims.get("client")
            client_id = self.endpoints["test_client"]["dev_clients"][dev] if dev else None
            return system_token(self.endpoints, audience, str(claims.get("scope", "")), client_id)
        if kind == "citizen":
            return citizen_token(self.endpoints, subject, audience)
        if kind != "practitioner":
            raise ValueError(f"no flow issues tokens for kind {kind!r}")
        facts = PractitionerFacts(
            hpr_number=str(claims.get("hpr_number") or subject.removeprefix("hpr:")),
            profession=str(claims.get("profession", "LE")),
            unit=claims.get("unit"),
            organisation=claims.get("organisation"),
            municipality=str(claims.get("municipality", "4601")),
        )
        if facts not in self._registered:
            register_practitioner(self.endpoints, facts)
            self._registered.add(facts)
        return practitioner_token(self.endpoints, facts, audience)

    def token_response(self, form: dict[str, str]) -> httpx.Response:
        return token_response(self.endpoints, form)

    def client_form(
        self, audience: str, scope: str, assertion: str | None = None
    ) -> dict[str, str]:
        return client_form(self.endpoints, audience, scope, assertion)

    def client_token(self, audience: str, scope: str) -> str:
        return system_token(self.endpoints, audience, scope)

    def exchange_form(self, subject_token: str, audience: str) -> dict[str, str]:
        return exchange_form(subject_token, audience)

    def exchange(self, subject_token: str, audience: str) -> str:
        return issued(token_response(self.endpoints, exchange_form(subject_token, audience)))

    def relate(
        self,
        patient: str,
        *,
        hpr: str | None = None,
        unit: str | None = None,
        kind: str = "gp_list",
        seen_by: str = "journal",
    ) -> str:
        """A care relation through master data (``unit`` may be any name: it stands for a
        synthetic organisation number); returns once ``seen_by``'s projection has it."""
        relation_id = f"rel-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {
            "relation_id": relation_id,
            "patient": handed(patient),
            "kind": kind,
            "period_start": "2020-01-01",
        }
        if hpr:
            body["practitioner"] = hpr
        if unit:
            body["unit"] = as_organisation_number(unit)
        token = self.client_token("masterdata", "CareRelation.write")
        answer = httpx.put(
            f"{self.url('masterdata')}/care-relations/{relation_id}",
            json=body,
            headers={"authorization": f"Bearer {token}"},
            timeout=10.0,
        )
        assert answer.status_code == 204, answer.text
        eventually(lambda: self.db(seen_by).care_relations.find_one({"_id": relation_id}))
        return relation_id

    def db(self, service: str) -> Any:
        return self.mongo[f"akson_{service}"]

    def _stream_values(self, topic: str) -> list[str]:
        host, port = self.endpoints["redis"]["address"].rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port), password=self.tokens["redis_password"])
        try:
            entries = client.xrange(topic)
        finally:
            client.close()
        return [
            value.decode() if isinstance(value, bytes) else str(value)
            for _, fields in entries or []
            for value in (fields or {}).values()
        ]

    def stream(self, topic: str) -> str:
        """Every message the Redis stream of ``topic`` holds, as text (what any subscriber
        sees)."""
        return "\n".join(self._stream_values(topic))

    def decide(self, policy_input: dict[str, Any]) -> dict[str, Any]:
        """OPA's answer to an access question asked straight, as an enforcement point would
        (its token): ``result`` and ``decision_id``; the decision is logged like any other."""
        answer = httpx.post(
            f"{self.endpoints['opa']['url']}/v1/data/akson/authz/decision",
            json={"input": policy_input},
            headers={"authorization": f"Bearer {self.tokens['opa_token']}"},
            timeout=10.0,
        )
        assert answer.status_code == 200, answer.text
        decision: dict[str, Any] = answer.json()
        return decision

    def publish(self, via: str, topic: str, envelope: dict[str, Any]) -> None:
        """Put a CloudEvent on ``topic`` through ``via``'s sidecar, as that service would."""
        sidecar = self.endpoints["services"][via]["dapr_http"]
        answer = httpx.post(
            f"{sidecar}/v1.0/publish/pubsub/{topic}",
            json=envelope,
            headers={
                "content-type": "application/cloudevents+json",
                "dapr-api-token": self.tokens["dapr_api_token"],
            },
            timeout=10.0,
        )
        assert answer.status_code == 204, answer.text

    def events(self, topic: str) -> list[dict[str, Any]]:
        """Every CloudEvent Dapr has put on ``topic``'s Redis stream."""
        events = []
        for value in self._stream_values(topic):
            try:
                event = json.loads(value)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("data"), dict):
                events.append(event)
        return events


@pytest.fixture(scope="session")
def platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    run_dir = ROOT / ".run" / f"test-{uuid.uuid4().hex[:8]}"
    stack = Stack(run_dir=run_dir)
    stack.up()
    tokens = json.loads((run_dir / "secrets" / "tokens.json").read_text())
    mongo: MongoClient[dict[str, Any]] = MongoClient(stack.endpoints["mongo"]["url"])
    platform = Platform(stack, stack.endpoints, tokens, mongo)
    try:
        yield platform
    finally:
        mongo.close()
        stack.down()
        leftovers = [
            name
            for name, process in stack.processes.items()
            if process.popen is not None and process.popen.poll() is None
        ]
        # the whole run's logs (apps, sidecars, OPA, FerretDB, PostgreSQL, Redis) hold none of
        # the national ids, HPR numbers and tokens the tests used, nor the runner's secrets
        logs = sorted((run_dir / "logs").glob("*.log"))
        leaks = log_hits(logs, {*handed_out, *tokens.values()})
        keep = bool(leftovers or leaks) or request.session.testsfailed > 0
        # keep the logs and data of a failed run for diagnosis; a passing run leaves nothing
        if not keep and not os.environ.get("AKSON_KEEP_RUN"):
            shutil.rmtree(run_dir, ignore_errors=True)
        assert not leftovers, f"still running after down: {leftovers}"
        assert {log.stem for log in logs} >= set(stack.processes), "a process wrote no log"
        # (a run of a few tests may hand out nothing: it still scans for the runner's secrets)
        if platform.log_scan_minimum:
            assert len(handed_out) > platform.log_scan_minimum, "the log scan had too little"
        assert not leaks, f"identifiers or tokens in process logs (file, line): {leaks[:20]}"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Poll until ``check`` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout} s"
    return value
