"""Audit benchmark (issue 5): the auditor's query by patient over a large decision log.

Starts its own stack, loads ``--decisions`` synthetic decisions (default 1,000,000) through the
store's own code path (``DecisionStore.append``: sanitise, extract the query fields, hash-chain,
ordered bulk insert, head and checkpoints) straight into the audit database, then prints:

- the load rate;
- the auditor's query by patient through the API (token, policy decision, query), p50/p99;
- the same by practitioner, and by patient through the database alone (no API, no policy);
- optionally (``--verify``) the time to verify the whole chain.

    make bench-audit [ARGS="--decisions 200000 --patients 20000"]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra" / "local"), str(ROOT)]

from measure import report, timed  # noqa: E402
from stack import Stack  # noqa: E402

from akson_common.db import Database  # noqa: E402
from audit.store import DecisionStore  # noqa: E402
from tests.support import system_token  # noqa: E402

CATEGORIES = ("general", "general", "general", "mental_health", "demographics")
REASONS_ALLOW = (["care_relation"], ["care_relation"], ["own_record"], ["emergency"])


def patient_id(n: int) -> str:
    return f"9{n:010d}"


def synthetic_entry(n: int, patients: int, practitioners: int, at: datetime) -> dict[str, Any]:
    """An OPA decision-log entry shaped like the journal's (identifiers only)."""
    rng = random.Random(n)
    hpr = str(9_000_000 + rng.randrange(practitioners))
    allow = rng.random() < 0.9
    reasons = rng.choice(REASONS_ALLOW) if allow else ["no_care_relation", "no_legal_basis"]
    return {
        "decision_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "path": "akson/authz/decision",
        "labels": {"app": "akson-authz", "environment": "bench"},
        "input": {
            "subject": {
                "id": f"hpr:{hpr}",
                "kind": "practitioner",
                "hpr_number": hpr,
                "profession": "LE",
                "organisation": f"97476{int(hpr) % 1000:04d}",
                "unit": f"unit-{int(hpr) % 500}",
                "municipality": rng.choice(("4601", "1103", "4204", "1804", "0301")),
                "roles": [],
            },
            "action": rng.choice(("read", "read", "search", "write")),
            "resource": {
                "type": "DocumentReference",
                "id": f"doc-{n}",
                "patient": patient_id(rng.randrange(patients)),
                "category": rng.choice(CATEGORIES),
            },
            "context": {
                "care_relations": [
                    {"relation_id": f"rel-{n}", "kind": "gp_list", "practitioner": hpr}
                ],
                "purpose": "treatment",
                "emergency_reason": "life_threatening" if "emergency" in reasons else None,
            },
        },
        "result": {
            "allow": allow,
            "reasons": reasons,
            "obligations": [],
            "policy_version": "0.3.0",
        },
    }


async def load(
    mongo_url: str, first_n: int, decisions: int, total: int, patients: int, batch: int
) -> None:
    """Append decisions ``first_n`` up to ``decisions`` (of ``total``) through the store."""
    database = Database(mongo_url, "akson_audit")
    store = DecisionStore(database, checkpoint_every=1000)
    await database.bootstrap()
    started = time.perf_counter()
    start_time = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / max(total, 1)
    practitioners = max(patients // 20, 10)
    try:
        for first in range(first_n, decisions, batch):
            entries = [
                synthetic_entry(n, patients, practitioners, start_time + step * n)
                for n in range(first, min(first + batch, decisions))
            ]
            await store.append(entries)
            done = first + len(entries)
            if done % (batch * 20) == 0 or done == decisions:
                elapsed = time.perf_counter() - started
                print(  # noqa: T201
                    f"  loaded {done:>9,} decisions ({(done - first_n) / elapsed:,.0f}/s "
                    f"since {first_n:,})",
                    flush=True,
                )
    finally:
        await database.close()


async def queries(endpoints: dict[str, Any], patients: int, samples: int, label: str) -> None:
    audit = endpoints["services"]["audit"]["app"]
    token = system_token(endpoints, "audit", "", endpoints["test_client"]["dev_clients"]["auditor"])
    headers = {"authorization": f"Bearer {token}"}
    rng = random.Random(7)
    practitioners = max(patients // 20, 10)
    async with httpx.AsyncClient(base_url=audit, headers=headers, timeout=60) as client:

        async def by_patient(_: int) -> None:
            answer = await client.get(
                "/audit/decisions", params={"patient": patient_id(rng.randrange(patients))}
            )
            assert answer.status_code == 200, answer.text

        await by_patient(0)  # warm the token verifier and the connection
        report(f"{label}: auditor query by patient (API)", await timed(samples, by_patient))

        async def by_practitioner(_: int) -> None:
            hpr = str(9_000_000 + rng.randrange(practitioners))
            answer = await client.get(
                "/audit/decisions", params={"practitioner": hpr, "_count": "50"}
            )
            assert answer.status_code == 200, answer.text

        report(
            f"{label}: auditor query by practitioner (API)",
            await timed(max(samples // 4, 10), by_practitioner),
        )
    database = Database(endpoints["mongo"]["url"], "akson_audit")
    store = DecisionStore(database)
    try:

        async def direct(_: int) -> None:
            await store.page({"patient": patient_id(rng.randrange(patients))}, limit=50)

        report(f"{label}: query by patient (database only)", await timed(samples, direct))
    finally:
        await database.close()


async def verify(mongo_url: str) -> None:
    database = Database(mongo_url, "akson_audit")
    try:
        started = time.perf_counter()
        report_ = await DecisionStore(database).verify()
        took = time.perf_counter() - started
        print(f"verify: {report_.summary()} in {took:.1f} s")  # noqa: T201
    finally:
        await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--verify", action="store_true", help="also time a full verify")
    parser.add_argument(
        "--measure-at",
        default="100000,250000,500000",
        help="also measure after loading this many decisions (comma-separated)",
    )
    args = parser.parse_args()
    stack = Stack(run_dir=ROOT / ".run" / f"bench-audit-{uuid.uuid4().hex[:8]}")
    print(f"stack up in {stack.up():.1f} s")  # noqa: T201
    try:
        print(  # noqa: T201
            f"loading {args.decisions:,} decisions over {args.patients:,} patients "
            f"through DecisionStore.append (batches of {args.batch:,})"
        )
        mongo = stack.endpoints["mongo"]["url"]
        stages = sorted(
            {int(n) for n in args.measure_at.split(",") if n and int(n) < args.decisions}
            | {args.decisions}
        )
        loaded = 0
        for stage in stages:
            asyncio.run(load(mongo, loaded, stage, args.decisions, args.patients, args.batch))
            loaded = stage
            asyncio.run(queries(stack.endpoints, args.patients, args.samples, f"{stage:>9,}"))
        if args.verify:
            asyncio.run(verify(stack.endpoints["mongo"]["url"]))
    finally:
        stack.down()
    shutil.rmtree(stack.run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
