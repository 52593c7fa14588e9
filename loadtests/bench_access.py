"""Access benchmark (issue 4): policy decisions and authorised journal reads on seeded data.

Starts its own stack, loads the synthetic population (``--persons``, default 2,000: the event
drain to the journal's projections is the slow part), records documents for patients on the
seeded GPs' lists, then prints:

- OPA decision latency over HTTP through the PEP (allow with relations and directives; deny);
- authorised DocumentReference read latency (sequential) and throughput (concurrent clients);
- search by patient and the patient summary.

    make bench-access [ARGS="--persons 10000"]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra" / "local"), str(ROOT), str(ROOT / "loadtests")]

from fixtures import note, practitioner_token, seeded_gps  # noqa: E402
from measure import report, timed  # noqa: E402
from seed_load import load  # noqa: E402
from stack import Stack  # noqa: E402

from akson_common.auth import Principal  # noqa: E402
from akson_common.policy import PolicyContext, PolicyEnforcementPoint, ResourceRef  # noqa: E402
from tests.support import run_secret  # noqa: E402

FHIR = "/fhir/R4"


async def decisions(endpoints: dict[str, Any]) -> None:
    pep = PolicyEnforcementPoint(
        endpoints["opa"]["url"], timeout_seconds=2.0, token=run_secret(endpoints, "opa_token")
    )
    await pep.start()
    patient = "17858000076"
    subject = Principal(
        id="hpr:1", kind="practitioner", hpr_number="1", profession="LE", unit="u1",
        organisation="o1", municipality="4601",
    )  # fmt: skip
    relations = [
        {"relation_id": f"r{i}", "patient": patient, "practitioner": str(i), "unit": f"u{i}",
         "kind": "gp_list", "active": True}
        for i in range(1, 4)
    ]  # fmt: skip
    directives = [
        {"directive_id": "d1", "version": 1, "patient": patient, "kind": "block",
         "status": "active", "active": True, "practitioner": "999", "categories": []},
        {"directive_id": "d2", "version": 1, "patient": patient, "kind": "reservation",
         "status": "active", "active": True, "scope": "nav", "categories": ["mental_health"]},
    ]  # fmt: skip
    context = PolicyContext(care_relations=relations, directives=directives)
    resource = ResourceRef(
        type="DocumentReference", patient=patient, category="general", unit="u1",
        organisation="o1", municipality="4601",
    )  # fmt: skip
    allowed = await pep.decide(subject, "read", resource, context)
    assert allowed.allow, allowed
    report(
        "opa decision over HTTP (PEP, allow)",
        await timed(2000, lambda _: pep.decide(subject, "read", resource, context)),
    )
    stranger = subject.model_copy(update={"hpr_number": "77", "unit": "u77"})
    report(
        "opa decision over HTTP (PEP, deny)",
        await timed(2000, lambda _: pep.decide(stranger, "read", resource, context)),
    )
    await pep.close()


async def journal_reads(endpoints: dict[str, Any], run_dir: Path, seconds: float) -> None:
    journal = endpoints["services"]["journal"]["app"]
    gps = seeded_gps(run_dir, 20)
    tokens = {hpr: await practitioner_token(endpoints, hpr, unit) for hpr, unit, _ in gps}
    documents: list[tuple[str, str, str]] = []  # (hpr, patient, location)
    async with httpx.AsyncClient(timeout=30) as http:
        started = time.monotonic()
        for hpr, _, patients in gps:
            headers = {"authorization": f"Bearer {tokens[hpr]}"}
            for patient in patients[:10]:
                for i in range(3):
                    while True:
                        created = await http.post(
                            f"{journal}{FHIR}/DocumentReference",
                            json=note(patient, i),
                            headers=headers,
                        )
                        if created.status_code == 201:
                            break
                        if time.monotonic() - started > 900:
                            raise SystemExit(f"no write after 900 s: {created.status_code}")
                        await asyncio.sleep(0.5)  # the projection is still catching up
                    documents.append((hpr, patient, created.headers["location"]))
        took = time.monotonic() - started
        label = "recorded documents (incl. projection catch-up)"
        print(f"{label:<52} {len(documents)} in {took:.1f} s")  # noqa: T201

        rng = random.Random(4)

        async def read(_: int) -> None:
            hpr, _patient, location = rng.choice(documents)
            answer = await http.get(
                f"{journal}{location}", headers={"authorization": f"Bearer {tokens[hpr]}"}
            )
            assert answer.status_code == 200, answer.status_code

        samples = await timed(1000, read)
        report("journal GET DocumentReference (authorised)", samples)
        print(f"{'  sequential throughput':<52} {1000 * len(samples) / sum(samples):8.0f} req/s")  # noqa: T201

        async def worker(deadline: float) -> int:
            done = 0
            while time.monotonic() < deadline:
                await read(0)
                done += 1
            return done

        for clients in (4, 16):
            began = time.monotonic()
            counts = await asyncio.gather(*(worker(began + seconds) for _ in range(clients)))
            rate = sum(counts) / (time.monotonic() - began)
            print(f"{f'  throughput, {clients} concurrent clients':<52} {rate:8.0f} req/s")  # noqa: T201

        async def search(_: int) -> None:
            hpr, patient, _location = rng.choice(documents)
            answer = await http.get(
                f"{journal}{FHIR}/DocumentReference",
                params={"patient": patient, "_count": "10"},
                headers={"authorization": f"Bearer {tokens[hpr]}"},
            )
            assert answer.status_code == 200 and answer.json()["total"] >= 3, answer.text

        report("journal search DocumentReference?patient (3+ hits)", await timed(300, search))

        async def summary(_: int) -> None:
            hpr, patient, _location = rng.choice(documents)
            answer = await http.get(
                f"{journal}{FHIR}/Patient/{patient}/$summary",
                headers={"authorization": f"Bearer {tokens[hpr]}"},
            )
            assert answer.status_code == 200, answer.text

        report("journal patient summary", await timed(200, summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    stack = Stack(run_dir=ROOT / ".run" / f"bench-access-{uuid.uuid4().hex[:8]}")
    print(f"stack up in {stack.up():.1f} s")  # noqa: T201
    try:
        load(stack.run_dir, args.persons, 2_000)
        # reads first: recording the documents waits for the seed's events to drain, so the
        # decision figures below are taken on a quiet stack
        asyncio.run(journal_reads(stack.endpoints, stack.run_dir, args.seconds))
        asyncio.run(decisions(stack.endpoints))
    finally:
        stack.down()
    shutil.rmtree(stack.run_dir, ignore_errors=True)  # kept only when the benchmark failed


if __name__ == "__main__":
    main()
