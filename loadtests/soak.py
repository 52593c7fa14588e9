"""`make soak`: the whole platform under light steady traffic for a long time (issue 12).

Starts its own stack the way `make up` does (a detached supervisor in its own run folder), seeds a
GP with a list of patients, then for ``--minutes`` (default ``SOAK_MINUTES`` or 75) runs locust
users: clinicians reading, searching and writing journal documents, a messaging user sending
referrals through messaging to the test peer, an importer posting a master data NDJSON import
now and then. Every minute a probe document is written and followed end to end: its
``journal.document.recorded`` event published (on the Redis stream), consumed (messaging's
processed-events record of that event id) and its decision stored in audit (OPA's decision log
and the enforcement report). At the end:

- every process alive (restarts allowed, if it came back healthy);
- no fatal or error line in any log (the lines found are listed);
- every probe published, consumed and audited;
- audit's hash chain verified and 0 open gaps between enforced and logged decisions.

It prints a table and writes it to loadtests/SOAK.md; exit status 1 when a check failed.

    make soak [ARGS="--minutes 3"]
"""

from __future__ import annotations

# first: locust monkey-patches the standard library (gevent) before anything else uses it
import locust

# isort: split

import argparse
import json
import os
import random
import re
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import redis
from locust.env import Environment
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra" / "local"), str(ROOT), str(ROOT / "loadtests")]

from fixtures import person as fixtures_person  # noqa: E402
from fixtures import text_note as note  # noqa: E402
from measure import report  # noqa: E402
from stack import read_state, status_table, stop_supervisor, up_detached  # noqa: E402

from tests.support import (  # noqa: E402
    PractitionerFacts,
    new_patient_id,
    practitioner_token,
    register_practitioner,
    system_token,
)

FHIR = "/fhir/R4"
REPORT = ROOT / "loadtests" / "SOAK.md"
PATIENTS = 20
PROBE_SECONDS = 60.0
TOKEN_REFRESH_SECONDS = 200.0  # platform tokens live 300 s
PEER_HER_ID = "61999001"  # the test peer answers every HER-id
DOCUMENT_RECORDED = "journal.document.recorded"
# a line that reports a failure: JSON logs (daprd, the apps, FerretDB) by level, PostgreSQL and
# redis by their markers, Python by its traceback header, Go by its panic
FAILURE_LINE = re.compile(
    r'"(level|severity)"\s*:\s*"(?i:fatal|error|critical|panic)"'
    r"|\b(FATAL|PANIC|ERROR|CRITICAL):"
    r"|^\S+ (ERROR|CRITICAL) "  # the supervisor's own log
    r"|Traceback \(most recent call last\)"
    r"|^panic:"
)


@dataclass
class Probe:
    number: int
    document_id: str
    decision_id: str
    written: float
    event_id: str | None = None
    published: float | None = None
    consumed: float | None = None
    audited: float | None = None


@dataclass
class Soak:
    """What the users share: the stack's endpoints, the seeded GP and patients, tokens."""

    run_dir: Path
    endpoints: dict[str, Any]
    gp: PractitionerFacts
    patients: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)  # locations of recorded documents
    messages: list[str] = field(default_factory=list)  # ids of the referrals sent
    probes: list[Probe] = field(default_factory=list)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, service: str) -> str:
        return str(self.endpoints["services"][service]["app"])

    def _cached(self, key: str, mint: Any) -> str:
        with self._lock:
            token, at = self._tokens.get(key, ("", 0.0))
            if time.monotonic() - at > TOKEN_REFRESH_SECONDS:
                token = mint()
                self._tokens[key] = (token, time.monotonic())
            return token

    def practitioner(self, audience: str) -> dict[str, str]:
        token = self._cached(
            f"gp:{audience}", lambda: practitioner_token(self.endpoints, self.gp, audience)
        )
        return {"authorization": f"Bearer {token}"}

    def system(self, audience: str, scope: str, client: str | None = None) -> dict[str, str]:
        client_id = self.endpoints["test_client"]["dev_clients"][client] if client else None
        token = self._cached(
            f"system:{audience}:{scope}:{client}",
            lambda: system_token(self.endpoints, audience, scope, client_id),
        )
        return {"authorization": f"Bearer {token}"}

    def auditor(self) -> dict[str, str]:
        return self.system("audit", "", "auditor")


# -- the traffic -------------------------------------------------------------------------------


class SoakUser(locust.FastHttpUser):
    abstract = True
    soak: ClassVar[Soak]


class Clinician(SoakUser):
    """The GP at work: mostly reads, some searches, a note now and then."""

    weight = 2
    wait_time = locust.between(1, 3)

    @locust.task(4)
    def read_document(self) -> None:
        if not self.soak.documents:
            return self.write_note()
        location = random.choice(self.soak.documents)
        self.client.get(location, headers=self.soak.practitioner("journal"), name="journal read")

    @locust.task(2)
    def search(self) -> None:
        self.client.get(
            f"{FHIR}/DocumentReference?patient={random.choice(self.soak.patients)}&_count=10",
            headers=self.soak.practitioner("journal"),
            name="journal search",
        )

    @locust.task(1)
    def write_note(self) -> None:
        with self.client.post(
            f"{FHIR}/DocumentReference",
            json=note(random.choice(self.soak.patients), "soak note"),
            headers=self.soak.practitioner("journal"),
            name="journal write",
            catch_response=True,
        ) as answer:
            if answer.status_code == 201 and answer.headers.get("location"):
                self.soak.documents.append(answer.headers["location"])
            else:
                answer.failure(f"journal write: {answer.status_code}")


class Messenger(SoakUser):
    """Referrals to an off-platform GP through messaging (the test peer answers)."""

    fixed_count = 1
    wait_time = locust.between(10, 20)

    @locust.task
    def send_referral(self) -> None:
        with self.client.post(
            f"{self.soak.url('messaging')}/messages",
            json={
                "kind": "referral",
                "patient": random.choice(self.soak.patients),
                "recipient_her_id": PEER_HER_ID,
                "text": "Henvisning (soak).",
            },
            headers=self.soak.practitioner("messaging"),
            name="messaging send",
            catch_response=True,
        ) as answer:
            if answer.status_code == 202:
                self.soak.messages.append(answer.json()["id"])
            else:
                answer.failure(f"messaging send: {answer.status_code}")


class Importer(SoakUser):
    """A population register's NDJSON import every couple of minutes (50 new persons)."""

    fixed_count = 1
    wait_time = locust.constant_pacing(120)

    @locust.task
    def import_persons(self) -> None:
        lines = [json.dumps(person(new_patient_id())) for _ in range(50)]
        with self.client.post(
            f"{self.soak.url('masterdata')}/import/persons",
            data="\n".join(lines) + "\n",
            headers={
                **self.soak.system("masterdata", "Patient.write"),
                "content-type": "application/x-ndjson",
            },
            name="masterdata import (50 persons)",
            catch_response=True,
        ) as answer:
            if answer.status_code != 200 or answer.json().get("rejected"):
                answer.failure(f"import: {answer.status_code} {answer.text[:200]}")


def person(national_id: str) -> dict[str, str]:
    return fixtures_person(national_id, given_name="Soak")


# -- seeding and probing -----------------------------------------------------------------------


def seed(soak: Soak) -> None:
    """The GP (with unit and organisation) and their list of patients, through master data;
    returns once journal and messaging accept work for every patient."""
    register_practitioner(soak.endpoints, soak.gp)
    registry = soak.system("masterdata", "Patient.write CareRelation.write")
    with httpx.Client(timeout=30.0) as http:
        for _ in range(PATIENTS):
            patient = new_patient_id()
            saved = http.put(
                f"{soak.url('masterdata')}/persons/{patient}", json=person(patient),
                headers=registry,
            )  # fmt: skip
            saved.raise_for_status()
            relation = f"rel-soak-{uuid.uuid4().hex[:12]}"
            saved = http.put(
                f"{soak.url('masterdata')}/care-relations/{relation}",
                json={"relation_id": relation, "patient": patient, "kind": "gp_list",
                      "practitioner": soak.gp.hpr_number, "period_start": "2020-01-01"},
                headers=registry,
            )  # fmt: skip
            saved.raise_for_status()
            soak.patients.append(patient)
        deadline = time.monotonic() + 300
        for patient in soak.patients:  # the projections catch up with master data's events
            while True:
                written = http.post(
                    f"{soak.url('journal')}{FHIR}/DocumentReference",
                    json=note(patient, "first note"), headers=soak.practitioner("journal"),
                )  # fmt: skip
                if written.status_code == 201:
                    soak.documents.append(written.headers["location"])
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"journal refused the seeded patients: {written.text}")
                time.sleep(0.5)
        while True:  # messaging's projection of the relations too
            sent = http.post(
                f"{soak.url('messaging')}/messages",
                json={"kind": "referral", "patient": soak.patients[-1],
                      "recipient_her_id": PEER_HER_ID, "text": "Henvisning (soak)."},
                headers=soak.practitioner("messaging"),
            )  # fmt: skip
            if sent.status_code == 202:
                soak.messages.append(sent.json()["id"])
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"messaging refused the seeded patients: {sent.text}")
            time.sleep(0.5)


class Prober:
    """A probe document every minute, followed until its event is consumed and its decision
    is in audit."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        tokens = json.loads((soak.run_dir / "secrets" / "tokens.json").read_text())
        host, port = soak.endpoints["redis"]["address"].rsplit(":", 1)
        self.redis = redis.Redis(host=host, port=int(port), password=tokens["redis_password"])
        self.mongo: MongoClient[dict[str, Any]] = MongoClient(soak.endpoints["mongo"]["url"])
        self.http = httpx.Client(timeout=30.0)
        self.cursor = "0-0"  # the stream entries before it were read already
        self.event_ids: dict[str, str] = {}  # document id -> CloudEvent id
        self.errors: list[str] = []

    def probe(self) -> None:
        number = len(self.soak.probes) + 1
        written = self.http.post(
            f"{self.soak.url('journal')}{FHIR}/DocumentReference",
            json=note(self.soak.patients[0], f"probe {number}"),
            headers=self.soak.practitioner("journal"),
        )
        if written.status_code != 201:
            self.errors.append(f"probe {number}: write answered {written.status_code}")
            return
        self.soak.probes.append(
            Probe(
                number,
                written.headers["location"].rsplit("/", 1)[-1],
                written.headers.get("akson-decision-id", ""),
                time.monotonic(),
            )
        )

    def follow(self) -> None:
        """Advance every probe that is not yet through."""
        entries = self.redis.xrange(DOCUMENT_RECORDED, min=f"({self.cursor}")
        for entry_id, fields in entries or []:
            self.cursor = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            for value in (fields or {}).values():
                try:
                    event = json.loads(value)
                except (ValueError, TypeError):
                    continue
                if isinstance(event, dict) and isinstance(event.get("data"), dict):
                    self.event_ids[str(event["data"].get("document_id"))] = str(event["id"])
        processed = self.mongo["akson_messaging"]["processed_events"]
        for probe in self.soak.probes:
            now = time.monotonic()
            if probe.published is None and probe.document_id in self.event_ids:
                probe.event_id, probe.published = self.event_ids[probe.document_id], now
            if probe.published is not None and probe.consumed is None:
                key = f"{DOCUMENT_RECORDED}:{probe.event_id}"
                if processed.find_one({"_id": key}) is not None:
                    probe.consumed = now
            if probe.audited is None and probe.decision_id:
                stored = self.http.get(
                    f"{self.soak.url('audit')}/audit/decisions/{probe.decision_id}",
                    headers=self.soak.auditor(),
                )
                if stored.status_code == 200:
                    probe.audited = now

    def pending(self) -> list[Probe]:
        return [p for p in self.soak.probes if None in (p.consumed, p.audited)]

    def run(self, until: float, stopping: threading.Event) -> None:
        next_probe = time.monotonic()
        while not stopping.is_set() and time.monotonic() < until:
            if time.monotonic() >= next_probe:
                self.probe()
                next_probe += PROBE_SECONDS
            try:
                self.follow()
            except Exception as error:  # a follow-up that fails is retried on the next round
                self.errors.append(f"following the probes: {error!r}")
            stopping.wait(2.0)

    def drain(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            self.follow()
            time.sleep(2.0)

    def close(self) -> None:
        self.redis.close()
        self.mongo.close()
        self.http.close()


# -- the verdict -------------------------------------------------------------------------------


def failure_lines(run_dir: Path, limit: int = 20) -> list[str]:
    found = []
    for log in sorted((run_dir / "logs").glob("*.log")):
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            if FAILURE_LINE.search(line):
                found.append(f"{log.name}:{number}: {line[:300]}")
    return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


def verdict(
    soak: Soak, prober: Prober, environment: Environment, minutes: float
) -> tuple[list[tuple[str, bool, str]], list[str]]:
    lines = failure_lines(soak.run_dir)
    rows = [
        process_row(soak),
        ("no fatal or error line in any log", not lines, f"{len(lines)} lines"),
        probe_row(soak, prober, minutes),
        *audit_rows(soak),
    ]
    outcomes = message_outcomes(soak)
    receipted = outcomes.get("receipted_ok", 0)
    rows.append(
        (
            "every referral receipted",
            receipted == len(soak.messages) > 0,
            f"{len(soak.messages)} sent: "
            + ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items())),
        )
    )
    total = environment.stats.total
    rows.append(
        (
            "traffic without failures",
            total.num_requests > 0 and total.num_failures == 0,
            f"{total.num_requests} requests, {total.num_failures} failures, "
            f"{total.total_rps:.2f} req/s, p50 {total.get_response_time_percentile(0.5):.0f} ms, "
            f"p95 {total.get_response_time_percentile(0.95):.0f} ms",
        )
    )
    details = [
        f"{name} ({method}): {s.num_requests} requests, {s.num_failures} failures, "
        f"p50 {s.get_response_time_percentile(0.5):.0f} ms, "
        f"p95 {s.get_response_time_percentile(0.95):.0f} ms"
        for (name, method), s in sorted(environment.stats.entries.items())
    ]
    details += [f"failure: {e.name}: {e.error} x{e.occurrences}" for e in _errors(environment)]
    details += [f"probe error: {e}" for e in prober.errors[:20]]
    details += [f"log: {line}" for line in lines]
    return rows, details


def process_row(soak: Soak) -> tuple[str, bool, str]:
    state = read_state(soak.run_dir) or {}
    processes = state.get("processes", {})
    down = [n for n, p in processes.items() if p.get("state") != "running" or not p.get("alive")]
    restarts = {n: p["restarts"] for n, p in processes.items() if p.get("restarts")}
    return (
        "every process alive",
        bool(processes) and not down,
        f"{len(processes) - len(down)}/{len(processes)} running; "
        f"restarts: {restarts or 'none'}" + (f"; not running: {down}" if down else ""),
    )


def probe_row(soak: Soak, prober: Prober, minutes: float) -> tuple[str, bool, str]:
    probes = soak.probes
    published = sum(p.published is not None for p in probes)
    consumed = sum(p.consumed is not None for p in probes)
    audited = sum(p.audited is not None for p in probes)
    expected = int(minutes * 60 // PROBE_SECONDS)
    return (
        "every probe event delivered",
        len(probes) >= expected and consumed == audited == len(probes) and not prober.errors,
        f"{len(probes)} probes (expected >= {expected}): {published} published, "
        f"{consumed} consumed by messaging, {audited} decisions in audit"
        + (f"; {len(prober.errors)} probe errors" if prober.errors else ""),
    )


def audit_rows(soak: Soak) -> list[tuple[str, bool, str]]:
    """The chain verified and no gap left open."""
    rows: list[tuple[str, bool, str]] = []
    with httpx.Client(timeout=600.0) as http:
        chain = http.get(f"{soak.url('audit')}/audit/chain/verify", headers=soak.auditor())
        verified = chain.json() if chain.status_code == 200 else {}
        rows.append(
            (
                "audit chain verified",
                bool(verified.get("intact")),
                verified.get("message") or f"{chain.status_code} {chain.text[:200]}",
            )
        )
        gaps = http.get(
            f"{soak.url('audit')}/audit/gaps",
            params={"_count": 1000},
            headers=soak.auditor(),
        )
        items = gaps.json().get("items", []) if gaps.status_code == 200 else None
        open_gaps = [g for g in items or [] if g["status"] == "open"]
        rows.append(
            (
                "audit gaps",
                items is not None and not open_gaps,
                f"{len(open_gaps)} open, {len(items or []) - len(open_gaps)} resolved late"
                if items is not None
                else f"{gaps.status_code} {gaps.text[:200]}",
            )
        )
    return rows


def message_outcomes(soak: Soak, timeout: float = 60.0) -> dict[str, int]:
    """How many referrals ended in which status (waiting a while for the last ones)."""
    operator = soak.system("messaging", "Communication.read")
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=30.0) as http:
        while True:
            outcomes: dict[str, int] = {}
            for message_id in soak.messages:
                answer = http.get(
                    f"{soak.url('messaging')}/messages/{message_id}", headers=operator
                )
                status = answer.json()["status"] if answer.status_code == 200 else "unreadable"
                outcomes[status] = outcomes.get(status, 0) + 1
            if set(outcomes) <= {"receipted_ok"} or time.monotonic() > deadline:
                return outcomes
            time.sleep(2.0)


def _errors(environment: Environment) -> list[Any]:
    return list(environment.stats.errors.values())[:20]


def write_report(
    rows: list[tuple[str, bool, str]],
    details: list[str],
    status: str,
    command: str,
    started: datetime,
    took: float,
) -> str:
    width = max(len(r[0]) for r in rows)
    table = [f"{'check':<{width}}  result  figures"]
    table += [f"{name:<{width}}  {'PASS' if ok else 'FAIL':<6}  {text}" for name, ok, text in rows]
    text = "\n".join(
        [
            "# Soak run (issue 12)",
            "",
            f"- date: {started:%Y-%m-%d %H:%M} UTC",
            f"- command: `{command}`",
            f"- duration: {took / 60:.1f} min of traffic",
            f"- verdict: {'PASS' if all(ok for _, ok, _ in rows) else 'FAIL'}",
            "",
            "```",
            *table,
            "```",
            "",
            "Details:",
            "",
            "```",
            *details,
            "```",
            "",
            "Processes at the end (`make status` of the soak's run folder):",
            "",
            "```",
            status,
            "```",
            "",
        ]
    )
    REPORT.write_text(text)
    return "\n".join(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "75"))
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder afterwards")
    args = parser.parse_args()
    command = "make soak" + (f' ARGS="{" ".join(sys.argv[1:])}"' if sys.argv[1:] else "")
    run_dir = ROOT / ".run" / f"soak-{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC)
    print(f"soak: {args.minutes:g} min in {run_dir}", flush=True)  # noqa: T201
    up_detached(run_dir)
    passed = False
    try:
        endpoints = json.loads((run_dir / "endpoints.json").read_text())
        gp = PractitionerFacts(hpr_number="9876543", unit="soak-gp-unit", organisation="soak-gp")
        soak = Soak(run_dir, endpoints, gp)
        seed(soak)
        print(f"seeded {len(soak.patients)} patients for GP {gp.hpr_number}", flush=True)  # noqa: T201
        SoakUser.soak = soak
        environment = Environment(
            user_classes=[Clinician, Messenger, Importer], host=soak.url("journal")
        )
        runner = environment.create_local_runner()
        prober = Prober(soak)
        stopping = threading.Event()
        began = time.monotonic()
        until = began + args.minutes * 60
        runner.start(4, spawn_rate=4)
        probing = threading.Thread(target=prober.run, args=(until, stopping), daemon=True)
        probing.start()
        while time.monotonic() < until:
            time.sleep(min(60.0, max(0.0, until - time.monotonic())))
            total = environment.stats.total
            print(  # noqa: T201
                f"{(time.monotonic() - began) / 60:5.1f} min: {total.num_requests} requests, "
                f"{total.num_failures} failures, {len(soak.probes)} probes, "
                f"{len(prober.pending())} pending",
                flush=True,
            )
        runner.quit()
        stopping.set()
        probing.join(timeout=30)
        took = time.monotonic() - began
        prober.drain()
        latencies = [(p.consumed - p.written) * 1000 for p in soak.probes if p.consumed is not None]
        if latencies:
            report("probe: write -> consumed by messaging", latencies)
        rows, details = verdict(soak, prober, environment, args.minutes)
        prober.close()
        table = write_report(rows, details, status_table(run_dir), command, started, took)
        print(table)  # noqa: T201
        print("\n".join(details))  # noqa: T201
        print(f"written to {REPORT}")  # noqa: T201
        passed = all(ok for _, ok, _ in rows)
    finally:
        stop_supervisor(run_dir)
    if passed and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
