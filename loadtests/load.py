"""`make load` / `make profile` (issue 15): locust against a stack of its own, one table.

Starts its own stack (the runner's supervised ``Stack``, detached, in ``.run/load-*``), seeds
five GPs and 50 patients on their lists through master data's NDJSON import, and 500 notes of
about 1 KB at the journal; then runs locust as a library (``FastHttpUser``, closed loop, each
run ``--seconds`` long after a short warm-up), at 1, 8 and 32 users, for:

- the floors: the journal app's ``/healthz``, the document fetch alone (pymongo ``find_one`` by
  ``_id`` through FerretDB), one OPA decision with the enforcement points' token;
- the authorised read ``GET DocumentReference/{id}``, then the read at a constant 300 req/s;
- search by patient (10 hits a patient, one page), ``Patient/{id}/$summary``, token exchange,
  create;
- the event drain: ``--import N`` persons and N GP relations through master data's import, and
  the time until the journal's projection has them all (counted in PostgreSQL).

For every run: req/s, p50, p99, failures, CPU ms per request summed over every process of the
stack (utime+stime from /proc of each process in its pid list and their children, before and
after), per process, and RSS per process. Printed, and written to ``loadtests/REPORT.md`` with
the commit, the date and the load average.

``--profile`` (``make profile``): instead, one read run at 8 users (60 s) with PostgreSQL's
``pg_stat_statements`` on (``AKSON_PG_STAT_STATEMENTS=1``), py-spy on the journal, audit and
identity apps, OPA's and FerretDB's metrics, then the statements per read, the table scans and
the hottest functions: the "Profile" section of the report.

    make load [ARGS="--seconds 15 --import 2000"]
    make profile [ARGS="--seconds 30"]
"""

from __future__ import annotations

# first: locust monkey-patches the standard library (gevent) before anything else uses it
import locust

# isort: split

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from locust.env import Environment
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra" / "local"), str(ROOT), str(ROOT / "loadtests")]

from fixtures import Seeded, Tokens, import_patients, seed  # noqa: E402
from locustfiles import (  # noqa: E402
    CreateUser,
    FetchUser,
    HealthUser,
    LoadUser,
    OpaUser,
    ReadUser,
    SearchUser,
    SummaryUser,
    Target,
    TokenUser,
)
from measure import usage  # noqa: E402
from stack import read_state, stop_supervisor, up_detached  # noqa: E402

from akson_common.auth import Principal, unverified_claims  # noqa: E402
from akson_common.policy import ResourceRef  # noqa: E402
from akson_common.projections import access_facts  # noqa: E402
from tests.support import Postgres, run_secret  # noqa: E402

REPORT = ROOT / "loadtests" / "REPORT.md"
WARMUP_SECONDS = 3.0
SETTLE_SECONDS = 3.0  # after a run: what the stack still burns (flushes, reconciliation)
USERS = (1, 8, 32)
CONSTANT_RATE = 300.0
CONSTANT_USERS = 32
PROFILED = ("journal-app", "audit-app", "identity-app")
NATIONAL_ID = re.compile(r"\b\d{11}\b")
SCENARIOS = {"read": ReadUser, "create": CreateUser, "search": SearchUser, "summary": SummaryUser}
IDLE_SECONDS = 10.0  # after the profiled run: what the stack does with no traffic
# the processes that get their own column; the rest are summed
COLUMNS = ("ferretdb", "postgres", "journal-app", "opa", "audit-app", "identity-app")


def log(text: str) -> None:
    print(text, flush=True)  # noqa: T201


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    users: int
    seconds: float
    latencies: list[float]  # ms of every request in the measured window
    errors: Counter[str]
    cpu: dict[str, float]  # CPU seconds per process in the window
    after: dict[str, float]  # CPU seconds per process in the settle time after the run
    rss: dict[str, int]
    generator_cpu: float  # locust's own CPU seconds (this process), not the platform's

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def failures(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        if q == 0.5:
            return statistics.median(ordered)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    def per_request(self, seconds: float) -> float:
        """Milliseconds of CPU per request."""
        return 1000 * seconds / self.requests if self.requests else float("nan")

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())


def platform_pids(run_dir: Path) -> dict[str, int]:
    """Every process of the stack the supervisor keeps (from its state.json)."""
    processes = (read_state(run_dir) or {}).get("processes", {})
    return {
        name: process["pid"]
        for name, process in processes.items()
        if process.get("alive") and isinstance(process.get("pid"), int)
    }


def run(
    scenario: str,
    user_class: type[locust.User],
    users: int,
    seconds: float,
    host: str,
    run_dir: Path,
    throughput: float | None = None,
    at_start: Callable[[], None] | None = None,
) -> Row:
    """One locust run: ``users`` users of ``user_class`` for a warm-up, then ``seconds``
    measured (``at_start`` is called as the measured window opens)."""
    if throughput is not None:
        user_class = type(
            f"{user_class.__name__}Paced",
            (user_class,),
            {"wait_time": locust.constant_throughput(throughput / users)},
        )
    environment = Environment(user_classes=[user_class], host=host)
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    def on_request(response_time: float, exception: Any, **_: Any) -> None:
        latencies.append(response_time)
        if exception is not None:
            # the URL of a failed request names the patient: no national id in the report
            errors[NATIONAL_ID.sub("<patient>", str(exception))[:160]] += 1

    environment.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]
    runner = environment.create_local_runner()
    runner.start(users, spawn_rate=users)
    time.sleep(WARMUP_SECONDS)
    pids = platform_pids(run_dir)
    latencies.clear()
    errors.clear()
    if at_start is not None:
        at_start()
    before, own, began = usage(pids), os.times(), time.monotonic()
    time.sleep(seconds)
    taken, failed = list(latencies), Counter(errors)
    after, own_after, took = usage(pids), os.times(), time.monotonic() - began
    runner.quit()
    time.sleep(SETTLE_SECONDS)
    settled = usage(pids)
    row = Row(
        scenario,
        users,
        took,
        taken,
        failed,
        after.minus(before),
        settled.minus(after),
        after.rss,
        (own_after.user + own_after.system) - (own.user + own.system),
    )
    log(line(row))
    return row


# -- the seeded target ---------------------------------------------------------------------------


def opa_input(endpoints: dict[str, Any], seeded: Seeded, tokens: Tokens) -> dict[str, Any]:
    """The input the journal sends OPA for a read of one seeded document, rebuilt from the same
    pieces: the GP's token claims, the stored document's access facts, the patient's projection."""
    document_id, patient = seeded.documents[0]
    gp = seeded.patients[patient]
    mongo: MongoClient[dict[str, Any]] = MongoClient(endpoints["mongo"]["url"])
    try:
        journal = mongo["akson_journal"]
        stored = journal["resources"].find_one({"_id": document_id}) or {}
        projection = journal["patients"].find_one({"_id": patient})
    finally:
        mongo.close()
    resource = ResourceRef(
        type="DocumentReference",
        patient=patient,
        category=stored.get("category"),
        sensitivity=stored.get("sensitivity", "normal"),
        unit=stored.get("unit"),
        organisation=stored.get("organisation"),
        municipality=stored.get("municipality"),
        author=stored.get("author"),
        id=document_id,
    )
    return {
        "subject": Principal.from_claims(unverified_claims(tokens.practitioner(gp))).model_dump(
            mode="json"
        ),
        "action": "read",
        "resource": resource.model_dump(mode="json"),
        "context": access_facts(patient, projection).model_dump(mode="json"),
    }


# -- PostgreSQL (the figures FerretDB's clients cannot see) ------------------------------------


# -- the event drain -----------------------------------------------------------------------------


@dataclass
class Drain:
    persons: int
    imported_seconds: float  # the import requests themselves
    total_seconds: float  # from the import's start until the projection had everything
    counted_persons: int
    counted_relations: int
    cpu: dict[str, float]

    @property
    def complete(self) -> bool:
        return self.counted_persons >= self.persons and self.counted_relations >= self.persons

    @property
    def events(self) -> int:
        return self.counted_persons + self.counted_relations


def drain(
    endpoints: dict[str, Any], run_dir: Path, seeded: Seeded, persons: int, timeout: float
) -> Drain:
    """Import ``persons`` persons and as many GP relations; wait (at most ``timeout`` after the
    import) until the journal's projection holds all of them: persons (patients documents with
    master data's facts) and relations (``care_relations`` documents), counted in PostgreSQL."""
    postgres = Postgres(endpoints)
    patients = postgres.table("akson_journal", "patients")
    relations = postgres.table("akson_journal", "care_relations")
    has_person = "_jsonb ? 'municipality'"
    base_persons, base_relations = postgres.count(patients, has_person), postgres.count(relations)
    pids = platform_pids(run_dir)
    before = usage(pids)
    started = time.monotonic()
    import_patients(endpoints, seeded.gps[:1], persons)
    imported = time.monotonic() - started
    log(f"imported {persons} persons + {persons} relations in {imported:.1f} s")
    deadline = time.monotonic() + timeout
    while True:
        counted = (
            postgres.count(patients, has_person) - base_persons,
            postgres.count(relations) - base_relations,
        )
        if min(counted) >= persons or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    took = time.monotonic() - started
    result = Drain(persons, imported, took, *counted, usage(pids).minus(before))
    log(
        f"drain: {result.events} events in the journal's projection after {took:.1f} s "
        f"({result.events / took:.0f} events/s){'' if result.complete else ' - INCOMPLETE'}"
    )
    return result


# -- the table -----------------------------------------------------------------------------------


def grouped(row: Row) -> list[float]:
    """CPU ms per request for the column processes, the sidecars together, and the rest."""
    cells = [row.per_request(row.cpu.get(name, 0.0)) for name in COLUMNS]
    sidecars = sum(cpu for name, cpu in row.cpu.items() if name.endswith("-dapr"))
    rest = row.cpu_total - sidecars - sum(row.cpu.get(name, 0.0) for name in COLUMNS)
    return [*cells, row.per_request(sidecars), row.per_request(rest)]


HEADER = (
    "| scenario | users | req/s | p50 ms | p99 ms | failures | CPU ms/req (all) | "
    + " | ".join(name.removesuffix("-app") for name in COLUMNS)
    + " | sidecars | rest | locust ms/req | CPU s after |"
)


def line(row: Row) -> str:
    cells = [
        row.scenario,
        str(row.users),
        f"{row.rate:.0f}",
        f"{row.percentile(0.5):.1f}",
        f"{row.percentile(0.99):.1f}",
        str(row.failures),
        f"{row.per_request(row.cpu_total):.2f}",
        *(f"{value:.2f}" for value in grouped(row)),
        f"{row.per_request(row.generator_cpu):.2f}",
        f"{sum(row.after.values()):.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def table(rows: list[Row]) -> str:
    separator = "|" + "---|" * HEADER.count(" | ") + "---|"
    return "\n".join([HEADER, separator, *(line(row) for row in rows)])


def process_details(rows: list[Row]) -> str:
    """Every process's CPU ms per request in each run (those above 0.005 ms), then its RSS."""
    names = sorted({name for row in rows for name in row.cpu}, key=_process_order)
    out = ["| process | " + " | ".join(f"{r.scenario} ({r.users})" for r in rows) + " |"]
    out.append("|" + "---|" * (len(rows) + 1))
    for name in names:
        cells = [f"{r.per_request(r.cpu.get(name, 0.0)):.3f}" for r in rows]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("RSS per process, MiB, the most seen at the end of a run (PostgreSQL: postmaster")
    out.append("and backends summed, so its shared buffers count more than once):")
    out.append("")
    most = {n: max(r.rss.get(n, 0) for r in rows) for n in names}
    out.append(", ".join(f"{n} {most[n] / 2**20:.0f}" for n in names))
    return "\n".join(out)


def _process_order(name: str) -> tuple[int, str]:
    infra = ["redis", "postgres", "ferretdb", "opa", "message-peer"]
    return (infra.index(name), name) if name in infra else (len(infra), name)


def errors_seen(rows: list[Row]) -> list[str]:
    return [
        f"- {row.scenario} ({row.users}): {count} x {error}"
        for row in rows
        for error, count in row.errors.most_common(3)
    ]


# -- the profile ---------------------------------------------------------------------------------


def prometheus(url: str, wanted: Callable[[str], bool], save: Path) -> dict[str, float]:
    """The samples of a Prometheus text page whose name (with labels) ``wanted`` accepts (the
    page itself is kept in ``save``)."""
    samples = {}
    page = httpx.get(url, timeout=10.0).text
    save.write_text(page)
    for text in page.splitlines():
        if text.startswith("#") or " " not in text:
            continue
        name, value = text.rsplit(" ", 1)
        if wanted(name):
            try:
                samples[name] = float(value)
            except ValueError:
                continue
    return samples


def _grown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# frames every sample passes through (the server's start-up, the event loop, the worker
# threads' start): left out of the inclusive table, they would head it saying nothing
WRAPPERS = re.compile(
    r"^(uvicorn/(server|main|_compat|__main__)\.py|click/|<frozen runpy>|asyncio/"
    r"(runners|base_events|events)\.py|threading\.py)"
)
# a FastAPI `def` dependency or endpoint runs in anyio's worker threads (a thread hop each)
THREAD_POOL = "anyio/_backends/_asyncio.py"
# Where a sample's CPU goes: the first rule whose files appear in the stack ("any") or hold the
# sample's innermost frame ("leaf") names it. Activities first (audit's intake, subscriptions,
# reconciliation), then mechanisms.
BUCKETS: list[tuple[str, str, tuple[str, ...]]] = [
    ("audit: decision-log intake (audit/intake.py)", "any", ("audit/intake.py",)),
    ("audit: reconciliation (audit/completeness.py)", "any", ("audit/completeness.py",)),
    (
        "event subscription delivery (akson_common/events.py)",
        "any",
        ("dapr/", "akson_common/events.py:Subscriptions"),
    ),
    (
        "OPA call (PEP, opa_client, aiohttp)",
        "any",
        ("akson_common/policy.py", "opa_client/", "aiohttp/"),
    ),
    (
        "JWT verification (joserfc, akson_common/auth.py)",
        "any",
        ("joserfc/", "akson_common/auth.py"),
    ),
    ("database (pymongo, bson)", "any", ("pymongo/", "bson/")),
    (
        "event publishing (outbox relay, httpx to daprd)",
        "any",
        ("akson_common/outbox.py", "akson_common/enforcement.py", "httpx/", "httpcore/"),
    ),
    ("thread-pool hops (sync dependencies, anyio)", "any", ("anyio/", "threading.py")),
    (
        "telemetry (OpenTelemetry)",
        "leaf",
        (
            "asgi/__init__.py",
            "trace/",
            "fastapi/telemetry",
            "context/",
            "opentelemetry",
            "propagat",
            "sdk/",
        ),
    ),
    ("response rendering (json, starlette responses)", "any", ("starlette/responses.py", "json/")),
    (
        "service logic (journal, audit, identity, akson_common, pydantic)",
        "leaf",
        ("journal/", "audit/", "identity/", "akson_common/", "pydantic"),
    ),
    (
        "web framework (uvicorn, starlette, fastapi)",
        "leaf",
        ("uvicorn/", "starlette/", "fastapi/", "httptools", "h11/"),
    ),
    ("event loop (asyncio: select, callbacks)", "leaf", ("asyncio/", "selectors.py")),
]


@dataclass
class Stacks:
    """py-spy's collapsed stacks (``--format raw --function``) of one process, aggregated."""

    total: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)
    packages: Counter[str] = field(default_factory=Counter)  # self samples by package
    buckets: Counter[str] = field(default_factory=Counter)  # samples by BUCKETS
    thread_pool: int = 0  # samples in anyio's worker threads

    @classmethod
    def read(cls, raw: Path) -> Stacks:
        stacks = cls()
        for text in raw.read_text().splitlines():
            stack, _, count = text.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            stacks.total += samples
            frames = [m for f in stack.split(";") if (m := FRAME.match(f)) is not None]
            if not frames:
                continue
            if any(m["file"].startswith(THREAD_POOL) for m in frames):
                stacks.thread_pool += samples
            names = {
                f"{m['function']} ({m['file']})" for m in frames if not WRAPPERS.match(m["file"])
            }
            for name in names:
                stacks.inclusive[name] += samples
            leaf = frames[-1]
            stacks.own[f"{leaf['function']} ({leaf['file']})"] += samples
            stacks.packages[_package(leaf["file"])] += samples
            stacks.buckets[_bucket(frames)] += samples
        return stacks

    def share(self, samples: int) -> float:
        return samples / self.total if self.total else 0.0


def _bucket(frames: list[re.Match[str]]) -> str:
    located = [f"{m['file']}:{m['function']}" for m in frames]
    for label, where, prefixes in BUCKETS:
        candidates = located if where == "any" else located[-1:]
        if any(c.startswith(prefixes) for c in candidates):
            return label
    return "other"


def _package(file: str) -> str:
    """The top-level package (or standard library module) a file belongs to."""
    first = file.lstrip("<").split("/")[0]
    return first.removesuffix(".py") if "/" not in file else first


@dataclass
class Profile:
    endpoints: dict[str, Any]
    run_dir: Path
    seconds: float
    folder: Path = field(init=False)
    postgres: Postgres = field(init=False)
    spies: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pprof_fetch: subprocess.Popen[bytes] | None = None
    ferretdb_profile: Path | None = None
    ferretdb: dict[str, float] = field(default_factory=dict)
    opa: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = self.run_dir / "profile"
        self.folder.mkdir(exist_ok=True)
        self.postgres = Postgres(self.endpoints)
        self.postgres.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def ferretdb_metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.endpoints['ports']['ferretdb_debug']}/debug/metrics"
        return prometheus(
            url,
            lambda name: name.startswith("ferretdb_client_requests_total"),
            self.folder / "ferretdb-metrics.txt",
        )

    def opa_metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.endpoints['ports']['opa_diagnostics']}/metrics"
        return prometheus(
            url,
            lambda name: name.startswith("http_request_duration_seconds"),
            self.folder / "opa-metrics.txt",
        )

    def start(self) -> None:
        """As the measured window opens: counters reset, metrics noted, py-spy attached."""
        self.postgres.query("SELECT pg_stat_statements_reset()")
        self.postgres.query("SELECT pg_stat_reset()")
        self.ferretdb, self.opa = self.ferretdb_metrics(), self.opa_metrics()
        pids = platform_pids(self.run_dir)
        pprof = f"http://127.0.0.1:{self.endpoints['ports']['ferretdb_debug']}/debug/pprof/profile"
        self.ferretdb_profile = self.folder / "ferretdb.pprof"
        self.pprof_fetch = subprocess.Popen(
            [
                "curl",
                "-sf",
                "-o",
                str(self.ferretdb_profile),
                f"{pprof}?seconds={int(self.seconds)}",
            ]
        )
        spy = str(Path(sys.executable).parent / "py-spy")
        for name in PROFILED:
            self.spies[name] = subprocess.Popen(
                [spy, "record", "--pid", str(pids[name]), "--nonblocking", "--function",
                 "--rate", "100", "--duration", str(int(self.seconds)), "--format", "raw",
                 "-o", str(self.folder / f"{name}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip

    def report(self, row: Row) -> str:
        for spy in self.spies.values():
            spy.wait(timeout=self.seconds + 60)
        time.sleep(1.0)  # PostgreSQL flushes its table statistics about once a second
        reads = row.requests
        out = [f"Profiled run: {line(row)}", ""]
        out += self._statements(reads)
        out += self._tables()
        out += self._ferretdb(reads)
        out += self._ferretdb_cpu(row)
        out += self._opa(reads)
        out += self._python(row)
        out += self._idle()
        return "\n".join(out)

    def _idle(self) -> list[str]:
        """What the stack runs in ``IDLE_SECONDS`` without traffic, right after the run."""
        self.postgres.query("SELECT pg_stat_statements_reset()")
        pids = platform_pids(self.run_dir)
        before = usage(pids)
        time.sleep(IDLE_SECONDS)
        burnt = usage(pids).minus(before)
        rows = self.postgres.query(
            "SELECT calls, round(total_exec_time::numeric, 1), rows,"
            " regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements"
            " WHERE query NOT LIKE '%pg_stat%' ORDER BY total_exec_time DESC LIMIT 8"
        )
        out = [
            f"### After the run: {IDLE_SECONDS:.0f} s without traffic",
            "",
            f"CPU {sum(burnt.values()):.1f} s: "
            + ", ".join(
                f"{n} {c:.2f} s" for n, c in sorted(burnt.items(), key=lambda kv: -kv[1])[:6]
            ),
            "",
            "| calls | total ms | rows | statement |",
            "|---|---|---|---|",
        ]
        for r in rows:
            text = r[3].replace("|", "\\|")
            text = text if len(text) <= 140 else text[:137] + "..."
            out.append(f"| {r[0]} | {r[1]} | {r[2]} | `{text}` |")
        return [*out, ""]

    def _statements(self, reads: int) -> list[str]:
        rows = self.postgres.query(
            "SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3),"
            " rows, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements"
            " WHERE query NOT LIKE '%pg_stat%' ORDER BY total_exec_time DESC"
        )
        rows = _grouped_statements(rows)
        calls = sum(int(r[0]) for r in rows)
        by_schema: Counter[str] = Counter()
        for r in rows:
            schema = re.search(r'"?(akson_[a-z_]+)"?\.', r[4])
            by_schema[schema[1] if schema else "(other)"] += int(r[0])
        out = [
            "### PostgreSQL statements (pg_stat_statements, measured window)",
            "",
            f"{calls} statements for {reads} reads: **{calls / reads:.1f} per read** "
            "(everything the stack ran in the window, background work included); by schema: "
            + ", ".join(f"{s} {n / reads:.2f}" for s, n in by_schema.most_common()),
            "",
        ]
        by_time = rows[:20]
        by_calls = sorted(rows, key=lambda r: -int(r[0]))[:15]
        for title, chosen in (("by total time", by_time), ("by calls", by_calls)):
            out += [f"{title}:", "", *_statement_table(chosen, reads), ""]
        return out

    def _tables(self) -> list[str]:
        rows = self.postgres.query(
            "SELECT schemaname, relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0),"
            " coalesce(idx_tup_fetch, 0), n_live_tup FROM pg_stat_user_tables"
            " WHERE seq_scan + coalesce(idx_scan, 0) > 0 ORDER BY seq_tup_read DESC"
        )
        collections: dict[str, str] = {}
        for schema in {r[0] for r in rows}:
            for name, table_name in self.postgres.query(
                f"SELECT _jsonb->>'_id', _jsonb->>'table' FROM {schema}._ferretdb_database_metadata"
            ):
                collections[f"{schema}.{table_name}"] = name
        out = [
            "### Table scans (pg_stat_user_tables, measured window)",
            "",
            "| table (collection) | seq_scan | seq_tup_read | idx_scan | idx_tup_fetch | rows |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            name = collections.get(f"{r[0]}.{r[1]}", r[1])
            size = self.postgres.count(f'{r[0]}."{r[1]}"')  # exact: the statistics were reset
            out.append(f"| {r[0]}.{name} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {size} |")
        return [*out, ""]

    def _ferretdb(self, reads: int) -> list[str]:
        grown = _grown(self.ferretdb, self.ferretdb_metrics())
        out = [
            "### MongoDB commands FerretDB served (its /debug/metrics, measured window)",
            "",
            f"{sum(grown.values()) / reads:.2f} commands per read:",
            "",
        ]
        out += [
            f"- {name}: {n / reads:.2f}/read"
            for name, n in sorted(grown.items(), key=lambda kv: -kv[1])
        ]
        return [*out, ""]

    def _ferretdb_cpu(self, row: Row) -> list[str]:
        """FerretDB's own CPU profile (Go pprof from its debug address), flat and cumulative."""
        if self.pprof_fetch is not None:
            self.pprof_fetch.wait(timeout=self.seconds + 60)
        profile = self.ferretdb_profile
        go = shutil.which("go") or "/usr/local/go/bin/go"
        cpu_ms = row.per_request(row.cpu.get("ferretdb", 0.0))
        out = [
            f"### FerretDB (Go pprof, measured window): {cpu_ms:.2f} ms CPU per read",
            "",
        ]
        if profile is None or not profile.is_file() or not Path(go).exists():
            return [*out, "No profile (the debug address did not answer, or no Go).", ""]
        for label, flags in (("flat", ["-top"]), ("cumulative", ["-top", "-cum"])):
            answer = subprocess.run(
                [go, "tool", "pprof", *flags, "-nodecount=25", str(profile)],
                capture_output=True,
                text=True,
            )
            lines = [t for t in answer.stdout.splitlines() if t.strip()]
            out += [f"{label}:", "", "```", *lines[:32], "```", ""]
        return out

    def _opa(self, reads: int) -> list[str]:
        grown = _grown(self.opa, self.opa_metrics())
        out = ["### OPA (diagnostic /metrics, measured window)", ""]
        for name in sorted(grown):
            if name.startswith("http_request_duration_seconds_count"):
                total = grown.get(name.replace("_count", "_sum"), 0.0)
                n = grown[name]
                out.append(
                    f"- {name.removeprefix('http_request_duration_seconds_count')}: "
                    f"{n / reads:.2f}/read, mean {1000 * total / n:.2f} ms"
                )
        if not grown:
            page = (self.folder / "opa-metrics.txt").read_text()[:200].replace("\n", " ")
            out.append(f"No HTTP metrics: OPA's diagnostic address answered `{page}`.")
        return [*out, ""]

    def _python(self, row: Row) -> list[str]:
        out = [
            "### Python (py-spy, 100 Hz, `--nonblocking`, measured window)",
            "",
            "Shares are of the samples py-spy took (it skips idle threads; the event loop's own "
            "`select` and a worker thread's wait can still show up). ms/read = share x the "
            "process's measured CPU per read.",
            "",
        ]
        for name in PROFILED:
            raw = self.folder / f"{name}.txt"
            if not raw.is_file():
                out += [f"- {name}: no profile (py-spy failed)", ""]
                continue
            stacks = Stacks.read(raw)
            cpu_ms = row.per_request(row.cpu.get(name, 0.0))
            out += [
                f"#### {name}: {cpu_ms:.2f} ms CPU per read, {stacks.total} samples; "
                f"{100 * stacks.share(stacks.thread_pool):.0f} % of them in anyio's worker "
                "threads (sync `def` dependencies/endpoints run there)",
                "",
                "| where (first matching rule) | share | ms/read |",
                "|---|---|---|",
                *(
                    f"| {bucket} | {100 * stacks.share(n):.0f} % | {stacks.share(n) * cpu_ms:.2f} |"
                    for bucket, n in stacks.buckets.most_common()
                ),
                "",
                "Self time by package: "
                + ", ".join(
                    f"{package} {100 * stacks.share(n):.0f} %"
                    for package, n in stacks.packages.most_common(14)
                ),
                "",
                "| function (inclusive, wrappers left out) | incl. | self | ms/read (incl.) |",
                "|---|---|---|---|",
            ]
            for function, n in stacks.inclusive.most_common(30):
                out.append(
                    f"| `{function}` | {100 * stacks.share(n):.0f} % | "
                    f"{100 * stacks.share(stacks.own[function]):.1f} % | "
                    f"{stacks.share(n) * cpu_ms:.2f} |"
                )
            out += ["", "Most self time:", ""]
            out += [
                f"- `{function}`: {100 * stacks.share(n):.1f} %"
                for function, n in stacks.own.most_common(15)
            ]
            out.append("")
        return out


VALUE_LISTS = re.compile(r"\(\$\d+\)(, \(\$\d+\))+|\$\d+(, \$\d+)+")


def _grouped_statements(rows: list[list[str]]) -> list[list[str]]:
    """One row per statement shape: a multi-row INSERT or an IN list of any length is one."""
    groups: dict[str, list[float]] = {}
    for calls, total, _mean, count, text in rows:
        key = VALUE_LISTS.sub("$1, ...", text)
        group = groups.setdefault(key, [0.0, 0.0, 0.0])
        group[0] += int(calls)
        group[1] += float(total)
        group[2] += int(count)
    ordered = sorted(groups.items(), key=lambda kv: -kv[1][1])
    return [
        [str(int(c)), f"{t:.1f}", f"{t / c if c else 0:.3f}", str(int(n)), key]
        for key, (c, t, n) in ordered
    ]


def _statement_table(rows: list[list[str]], reads: int) -> list[str]:
    out = [
        "| calls/read | calls | total ms | mean ms | rows | statement |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        text = r[4].replace("|", "\\|")
        text = text if len(text) <= 160 else text[:157] + "..."
        out.append(f"| {int(r[0]) / reads:.2f} | {r[0]} | {r[1]} | {r[2]} | {r[3]} | `{text}` |")
    return out


def opa_timers(endpoints: dict[str, Any], target: Target, samples: int = 200) -> list[str]:
    """OPA's own timers for the read's decision (``?metrics=true``, then with
    ``&instrument=true`` for the evaluation's parts), averaged over ``samples`` calls."""
    base = f"{endpoints['opa']['url']}/v1/data/akson/authz/decision?metrics=true"
    headers = {"authorization": f"Bearer {target.opa_token}"}
    out = [
        "### OPA's own timers for the read's decision (sequential, after the run)",
        "",
        f"Input: {len(json.dumps(target.opa_input))} bytes of JSON. Mean of {samples} calls:",
        "",
    ]
    with httpx.Client(timeout=10.0) as http:
        for label, url in (("plain", base), ("instrumented", f"{base}&instrument=true")):
            totals: Counter[str] = Counter()
            for _ in range(samples):
                answer = http.post(url, json={"input": target.opa_input}, headers=headers)
                for name, value in answer.json().get("metrics", {}).items():
                    if name.startswith("timer_") and isinstance(value, int | float):
                        totals[name] += int(value)
            out.append(
                f"- {label}: "
                + ", ".join(
                    f"{name.removeprefix('timer_').removesuffix('_ns')} "
                    f"{value / samples / 1000:.0f} µs"
                    for name, value in totals.most_common(10)
                )
            )
    return [*out, ""]


# -- the report ----------------------------------------------------------------------------------


def write_section(name: str, body: str) -> None:
    """Replace (or add) the section between ``<!-- name -->`` markers in REPORT.md."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = REPORT.read_text() if REPORT.is_file() else "# Load and profile (issue 15)\n\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(text)


def header(command: str) -> list[str]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        f"- commit: `{commit}`{' (with uncommitted changes)' if dirty else ''}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- load average at the start (1, 5, 15 min): {load}",
        f"- machine: {os.cpu_count()} cores, shared; locust runs on the same cores",
    ]


# -- main ----------------------------------------------------------------------------------------


def target_for(endpoints: dict[str, Any], seeded: Seeded, tokens: Tokens) -> Target:
    target = Target(
        endpoints,
        seeded,
        tokens,
        run_secret(endpoints, "opa_token"),
        opa_input(endpoints, seeded, tokens),
    )
    LoadUser.target = target
    FetchUser.target = target
    return target


def load_runs(
    endpoints: dict[str, Any], run_dir: Path, seconds: float, users: list[int], only: set[str]
) -> list[Row]:
    journal = endpoints["services"]["journal"]["app"]
    identity = endpoints["services"]["identity"]["app"]
    opa = endpoints["opa"]["url"]
    scenarios: list[tuple[str, type[locust.User], str]] = [
        ("healthz", HealthUser, journal),
        ("fetch by _id", FetchUser, journal),
        ("read", ReadUser, journal),
        ("search by patient", SearchUser, journal),
        ("$summary", SummaryUser, journal),
        ("token exchange", TokenUser, identity),
        ("create", CreateUser, journal),  # after the reads: it grows what they read
        # last: no enforcement point reports its decisions, so audit raises each one as a
        # logged-only gap once the grace has passed: work that would land on a later scenario
        ("opa decision", OpaUser, opa),
    ]
    rows = []
    log(HEADER)
    for scenario, user_class, host in scenarios:
        if only and scenario.split()[0].strip("$") not in only:
            continue
        for n in users:
            rows.append(run(scenario, user_class, n, seconds, host, run_dir))
        if scenario == "read":
            rows.append(
                run(
                    f"read at {CONSTANT_RATE:.0f}/s",
                    ReadUser,
                    CONSTANT_USERS,
                    seconds,
                    journal,
                    run_dir,
                    throughput=CONSTANT_RATE,
                )
            )
    return rows


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds a run")
    parser.add_argument("--import", dest="persons", type=int, default=10_000)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--users", default=",".join(map(str, USERS)))
    parser.add_argument(
        "--only", default="", help="comma list of scenarios' first words (read,create,...)"
    )
    parser.add_argument("--profile", action="store_true", help="the profiled read instead")
    parser.add_argument(
        "--scenario", default="read", choices=sorted(SCENARIOS), help="what --profile profiles"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder afterwards")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    command = ("make profile" if args.profile else "make load") + (
        f' ARGS="{" ".join(a for a in sys.argv[1:] if a != "--profile")}"'
        if [a for a in sys.argv[1:] if a != "--profile"]
        else ""
    )
    facts = header(command)
    log("\n".join(facts))
    if args.profile:
        os.environ["AKSON_PG_STAT_STATEMENTS"] = "1"  # read by the runner's PostgreSQL
    run_dir = ROOT / ".run" / f"{'profile' if args.profile else 'load'}-{uuid.uuid4().hex[:8]}"
    up_detached(run_dir)
    finished = False
    try:
        endpoints = json.loads((run_dir / "endpoints.json").read_text())
        tokens = Tokens(endpoints)
        seeded = seed(endpoints, tokens, log=log)
        target = target_for(endpoints, seeded, tokens)
        if args.profile:
            profiled(args, endpoints, run_dir, facts, target)
        else:
            measured(args, endpoints, run_dir, facts, seeded)
        log(f"written to {REPORT}")
        finished = True
    finally:
        stop_supervisor(run_dir)
    if finished and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)


def profiled(
    args: argparse.Namespace,
    endpoints: dict[str, Any],
    run_dir: Path,
    facts: list[str],
    target: Any,
) -> None:
    """``make profile``: one scenario under py-spy and PostgreSQL's statement statistics."""
    profile = Profile(endpoints, run_dir, args.seconds)
    journal = endpoints["services"]["journal"]["app"]
    log(HEADER)
    row = run(f"{args.scenario} (profiled)", SCENARIOS[args.scenario], 8, args.seconds,
              journal, run_dir, at_start=profile.start)  # fmt: skip
    body = "\n".join(
        ["## Profile (measured)", "", *facts, "", profile.report(row),
         *opa_timers(endpoints, target)]
    )  # fmt: skip
    write_section("profile", body)
    log(body)


def measured(
    args: argparse.Namespace,
    endpoints: dict[str, Any],
    run_dir: Path,
    facts: list[str],
    seeded: Any,
) -> None:
    """``make load``: the scenarios at each user count, then the event drain."""
    users = [int(n) for n in args.users.split(",") if n]
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    rows = load_runs(endpoints, run_dir, args.seconds, users, only)
    result = drain(endpoints, run_dir, seeded, args.persons, args.drain_timeout)
    drained = (
        f"Event drain: {result.persons} persons + {result.persons} GP relations through "
        f"master data's NDJSON import; the import requests took "
        f"{result.imported_seconds:.1f} s; the journal's projection held "
        f"{result.counted_persons} persons and {result.counted_relations} relations "
        f"{result.total_seconds:.1f} s after the import started: "
        f"**{result.events / result.total_seconds:.0f} events/s**"
        + ("" if result.complete else " (INCOMPLETE: timed out)")
        + f"; CPU {sum(result.cpu.values()):.1f} s over the stack "
        f"({1000 * sum(result.cpu.values()) / max(result.events, 1):.2f} ms per event: "
        + ", ".join(
            f"{n} {1000 * c / max(result.events, 1):.2f}"
            for n, c in sorted(result.cpu.items(), key=lambda kv: -kv[1])[:6]
        )
        + ")."
    )
    body = "\n".join(
        [
            "## Load (measured)",
            "",
            *facts,
            f"- seeded: {len(seeded.gps)} GPs, {len(seeded.patients)} patients, "
            f"{len(seeded.documents)} documents of ~1 KB; {WARMUP_SECONDS:.0f} s warm-up "
            f"a run, then {args.seconds:g} s measured; closed loop (no wait)",
            "",
            "CPU columns: ms of CPU per request (utime+stime from /proc, the process and "
            "its children); sidecars = the seven daprd; rest = redis, message peer and "
            "the other apps; locust = the load generator (not in 'all'); CPU s after = "
            f"what the stack burnt in the {SETTLE_SECONDS:.0f} s after the run.",
            "",
            table(rows),
            "",
            drained,
            "",
            "Failures seen:" if any(r.failures for r in rows) else "No failures.",
            *errors_seen(rows),
            "",
            "### CPU ms per request by process",
            "",
            process_details(rows),
        ]
    )
    write_section("load", body)
    log("\n" + body)


if __name__ == "__main__":
    main()
