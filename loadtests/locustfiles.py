"""The locust users of `make load` (issue 15): one user class per scenario, each a closed loop
(no wait) unless the run gives it a constant throughput.

Every user reads what it needs from ``Target`` (set by ``load.py`` before a run): the seeded
documents and patients, the tokens, the OPA input, the database URL.
"""

from __future__ import annotations

# first: locust monkey-patches the standard library (gevent) before anything else uses it
import locust

# isort: split

import random
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from fixtures import FHIR, Seeded, Tokens, note
from pymongo import MongoClient

from tests.support import exchange_form

NOTE_BYTES = 700  # a stored DocumentReference of about 1 KB


@dataclass
class Target:
    """What the users of one load run share."""

    endpoints: dict[str, Any]
    seeded: Seeded
    tokens: Tokens
    opa_token: str
    opa_input: dict[str, Any]
    rng: random.Random = field(default_factory=lambda: random.Random(15))

    def url(self, service: str) -> str:
        return str(self.endpoints["services"][service]["app"])

    def document(self) -> tuple[str, dict[str, str]]:
        """A seeded document's id and the bearer header of its patient's GP."""
        document_id, patient = self.rng.choice(self.seeded.documents)
        return document_id, self.bearer(patient)

    def patient(self) -> tuple[str, dict[str, str]]:
        patient = self.rng.choice(list(self.seeded.patients))
        return patient, self.bearer(patient)

    def bearer(self, patient: str) -> dict[str, str]:
        token = self.tokens.practitioner(self.seeded.patients[patient])
        return {"authorization": f"Bearer {token}"}


class LoadUser(locust.FastHttpUser):
    abstract = True
    target: ClassVar[Target]
    wait_time = locust.constant(0)


class ReadUser(LoadUser):
    """The authorised read: token, projection, OPA, store, decision logged."""

    @locust.task
    def read(self) -> None:
        document_id, headers = self.target.document()
        self.client.get(f"{FHIR}/DocumentReference/{document_id}", headers=headers, name="read")


class CreateUser(LoadUser):
    @locust.task
    def create(self) -> None:
        patient, headers = self.target.patient()
        self.client.post(
            f"{FHIR}/DocumentReference",
            json=note(patient, int(time.time()), NOTE_BYTES),
            headers=headers,
            name="create",
        )


class SearchUser(LoadUser):
    """Search by patient: ten documents a patient, one page of ten."""

    @locust.task
    def search(self) -> None:
        patient, headers = self.target.patient()
        self.client.get(
            f"{FHIR}/DocumentReference?patient={patient}&_count=10", headers=headers, name="search"
        )


class SummaryUser(LoadUser):
    @locust.task
    def summary(self) -> None:
        patient, headers = self.target.patient()
        self.client.get(f"{FHIR}/Patient/{patient}/$summary", headers=headers, name="summary")


class TokenUser(LoadUser):
    """Token exchange (RFC 8693) of an upstream personnel token for a journal token."""

    @locust.task
    def exchange(self) -> None:
        gp = self.target.rng.choice(self.target.seeded.gps)
        self.client.post(
            "/token",
            data=urlencode(exchange_form(self.target.tokens.upstream(gp), "journal")),
            headers={"content-type": "application/x-www-form-urlencoded"},
            name="token exchange",
        )


class OpaUser(LoadUser):
    """Floor: one access decision straight at OPA, with the enforcement points' token."""

    @locust.task
    def decide(self) -> None:
        self.client.post(
            "/v1/data/akson/authz/decision",
            json={"input": self.target.opa_input},
            headers={"authorization": f"Bearer {self.target.opa_token}"},
            name="opa decision",
        )


class HealthUser(LoadUser):
    """Floor: the journal app's /healthz (the web stack alone)."""

    @locust.task
    def health(self) -> None:
        self.client.get("/healthz", name="healthz")


class FetchUser(locust.User):
    """Floor: the document fetch alone, a pymongo find by ``_id`` through FerretDB."""

    target: ClassVar[Target]
    wait_time = locust.constant(0)

    def on_start(self) -> None:
        self.mongo: MongoClient[dict[str, Any]] = MongoClient(
            self.target.endpoints["mongo"]["url"], maxPoolSize=1
        )
        self.resources = self.mongo["akson_journal"]["resources"]

    def on_stop(self) -> None:
        self.mongo.close()

    @locust.task
    def fetch(self) -> None:
        document_id, _patient = self.target.rng.choice(self.target.seeded.documents)
        started = time.perf_counter()
        error: Exception | None = None
        try:
            if self.resources.find_one({"_id": document_id}) is None:
                error = LookupError("document not found")
        except Exception as failure:  # reported to locust as the request's failure
            error = failure
        self.environment.events.request.fire(
            request_type="mongo",
            name="find_one by _id",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={},
        )
