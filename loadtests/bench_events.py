"""`make bench-events`: the event pipeline from a master-data bulk import to every consumer's
projection, on a stack of its own.

Imports ``--persons`` persons and as many GP relations through master data's NDJSON import,
then counts (in PostgreSQL, where FerretDB keeps them) until every consumer of
``masterdata.person.changed`` / ``masterdata.care_relation.changed`` holds all of them: journal,
consent and messaging (``patients`` with master data's facts, ``care_relations``) and identity
(``persons``). Prints the time from the import's start and from its end, and events/s.

    python loadtests/bench_events.py [--persons 100000] [--chunk 5000] [--timeout 1800]
        [--statements]

``--statements``: PostgreSQL's ``pg_stat_statements`` over the import and the drain, the
statements that took the most time (the runner starts PostgreSQL with it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "infra" / "local")]

from stack import Stack  # noqa: E402

from akson_common.identifiers import synthetic_national_id  # noqa: E402
from tests.support import Postgres as SharedPostgres  # noqa: E402
from tests.support import run_secret, system_token  # noqa: E402

SCOPES = "Patient.write Practitioner.write Organization.write CareRelation.write"
NDJSON = "application/x-ndjson"
GP = {"hpr_number": "9100001", "unit": "974600951"}
PERSON_TOPIC = "masterdata.person.changed"
RELATION_TOPIC = "masterdata.care_relation.changed"
# (consumer, collection, condition): what "has the event" means in each projection
PROJECTIONS = [
    (service, collection, condition)
    for service in ("journal", "consent", "messaging")
    for collection, condition in (("patients", "_jsonb ? 'municipality'"), ("care_relations", ""))
] + [("identity", "persons", "")]


def log(message: str) -> None:
    print(message, flush=True)  # noqa: T201


class Postgres(SharedPostgres):
    """psql as the runner's superuser, counting the projections in one call."""

    def counts(self, skip: Iterable[str] = ()) -> dict[str, int]:
        """Every projection's count but those in ``skip``, in one psql call (tables not created
        yet count 0): counting scans, so complete ones are not counted again."""
        parts: list[tuple[str, str]] = []
        for service, collection, condition in PROJECTIONS:
            if f"{service}.{collection}" in skip:
                continue
            table = self.table_or_none(f"akson_{service}", collection)
            if table is not None:
                where = f" WHERE {condition}" if condition else ""
                parts.append((f"{service}.{collection}", f"(SELECT count(*) FROM {table}{where})"))
        result = {f"{s}.{c}": 0 for s, c, _ in PROJECTIONS if f"{s}.{c}" not in skip}
        if parts:
            row = self.query("SELECT " + ", ".join(sql for _, sql in parts))[0]
            result.update({name: int(value) for (name, _), value in zip(parts, row, strict=True)})
        return result


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of each stack process and all its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    by_root = {pid: name for name, pid in roots.items()}
    totals = dict.fromkeys(roots, 0.0)
    for pid, seconds in used.items():
        ancestor = pid
        while ancestor > 1 and ancestor not in by_root:
            ancestor = parent.get(ancestor, 1)
        if ancestor in by_root:
            totals[by_root[ancestor]] += seconds
    return totals


@dataclass
class Import:
    started: float
    ended: float


def patient_ids(count: int) -> list[str]:
    """``count`` distinct synthetic national ids, new in every run (tests.support's
    ``new_patient_id`` repeats after 14,700): birth dates over 50 years, a run-specific offset,
    then the next synthetic sequence number."""
    days = 50 * 365
    offset = int(time.time()) % days
    first = date(1950, 1, 1)
    return [
        synthetic_national_id(first + timedelta(days=(offset + n) % days), n // days + 1)
        for n in range(count)
    ]


def import_population(endpoints: dict[str, Any], persons: int, chunk: int) -> Import:
    base = endpoints["services"]["masterdata"]["app"]
    patients = patient_ids(persons)
    records = {
        "persons": [
            {"national_id": p, "given_name": "Last", "family_name": "Syntetisk",
             "municipality": "4601"}
            for p in patients
        ],
        "care-relations": [
            {"relation_id": f"gp-{p}", "patient": p, "kind": "gp_list",
             "practitioner": GP["hpr_number"], "unit": GP["unit"], "period_start": "2020-01-01"}
            for p in patients
        ],
    }  # fmt: skip
    started = time.monotonic()
    with httpx.Client(timeout=900.0) as http:
        for kind, lines in records.items():
            for start in range(0, len(lines), chunk):
                token = system_token(endpoints, "masterdata", SCOPES)
                answer = http.post(
                    f"{base}/import/{kind}",
                    content="\n".join(json.dumps(r) for r in lines[start : start + chunk]) + "\n",
                    headers={"authorization": f"Bearer {token}", "content-type": NDJSON},
                )
                answer.raise_for_status()
                report = answer.json()
                if report.get("created") != len(lines[start : start + chunk]):
                    raise SystemExit(f"import {kind}: {answer.text[:300]}")
    return Import(started, time.monotonic())


def stream_lengths(endpoints: dict[str, Any]) -> dict[str, int]:
    host, port = endpoints["redis"]["address"].rsplit(":", 1)
    client = redis.Redis(
        host=host, port=int(port), password=run_secret(endpoints, "redis_password")
    )
    try:
        return {topic: int(client.xlen(topic)) for topic in (PERSON_TOPIC, RELATION_TOPIC)}
    finally:
        client.close()


def top_statements(postgres: Postgres, limit: int = 15) -> None:
    rows = postgres.query(
        "SELECT round(total_exec_time)::bigint, calls, rows,"
        " left(regexp_replace(query, '\\s+', ' ', 'g'), 160)"
        f" FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT {limit}"
    )
    log("PostgreSQL statements by total time (ms, calls, rows, statement):")
    for total, calls, count, query in rows:
        log(f"  {total:>8} {calls:>8} {count:>9}  {query}")


def run(persons: int, chunk: int, timeout: float, run_dir: Path, statements: bool) -> None:
    if statements:
        os.environ["AKSON_PG_STAT_STATEMENTS"] = "1"
    stack = Stack(run_dir=run_dir)
    log(f"stack up in {stack.up(supervise=True):.1f} s ({run_dir})")
    try:
        endpoints = stack.endpoints
        postgres = Postgres(endpoints)
        base = postgres.counts()
        load = os.getloadavg()[0]
        roots = {
            name: process.popen.pid
            for name, process in stack.processes.items()
            if process.popen is not None
        }
        if statements:
            postgres.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            postgres.query("SELECT pg_stat_statements_reset()")
        cpu_before = cpu_seconds(roots)
        imported = import_population(endpoints, persons, chunk)
        took = imported.ended - imported.started
        log(f"imported {persons} persons + {persons} GP relations in {took:.1f} s")
        complete_at: dict[str, float] = {}
        longest = dict.fromkeys((PERSON_TOPIC, RELATION_TOPIC), 0)
        deadline = imported.ended + timeout
        counts = dict(base)
        while len(complete_at) < len(PROJECTIONS) and time.monotonic() < deadline:
            counts.update(postgres.counts(skip=complete_at))
            now = time.monotonic()
            for name, count in counts.items():
                if name not in complete_at and count - base[name] >= persons:
                    complete_at[name] = now
            for topic, length in stream_lengths(endpoints).items():
                longest[topic] = max(longest[topic], length)
            time.sleep(1.0)
        events = 2 * persons
        log(f"load average at the import's start: {load:.2f}; now {os.getloadavg()[0]:.2f}")
        for name in counts:
            held = counts[name] - base[name]
            if name in complete_at:
                after = complete_at[name] - imported.ended
                log(f"  {name:<26} {held:>8} complete {after:7.1f} s after the import's end")
            else:
                log(f"  {name:<26} {held:>8} INCOMPLETE after {timeout:.0f} s")
        if len(complete_at) == len(PROJECTIONS):
            last = max(complete_at.values())
            log(
                f"every consumer complete {last - imported.ended:.1f} s after the import's end, "
                f"{last - imported.started:.1f} s after its start: "
                f"{events / (last - imported.started):.0f} events/s end to end "
                f"({events} events, x{len(PROJECTIONS) - 3} consumers of persons)"
            )
        cpu = {n: s - cpu_before[n] for n, s in cpu_seconds(roots).items()}
        busiest = sorted(cpu.items(), key=lambda item: -item[1])[:8]
        log(
            f"CPU from the import's start to the end of the drain: {sum(cpu.values()):.1f} s, "
            + ", ".join(f"{n} {s:.1f}" for n, s in busiest)
        )
        lengths = ", ".join(f"{t} {n}" for t, n in longest.items())
        log(f"longest stream seen: {lengths}; now {stream_lengths(endpoints)}")
        if statements:
            top_statements(postgres)
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--run-dir", type=Path, default=None, help="default: a new one in .run")
    parser.add_argument("--statements", action="store_true", help="pg_stat_statements top list")
    args = parser.parse_args()
    # a fresh stack every time: counts start from empty projections
    run_dir = args.run_dir or ROOT / ".run" / f"bench-events-{time.strftime('%H%M%S')}"
    run(args.persons, args.chunk, args.timeout, run_dir.resolve(), args.statements)


if __name__ == "__main__":
    main()
