"""Foundation benchmark: FerretDB write/read latency, OPA decision latency, a policy-checked
journal read over HTTP. Starts its own stack, prints figures, stops everything.

    make bench
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path[:0] = [
    str(Path(__file__).resolve().parents[1] / "infra" / "local"),
    str(Path(__file__).resolve().parents[1]),
]

from measure import report, timed  # noqa: E402
from stack import ROOT, Stack, mint_upstream  # noqa: E402

from akson_common.auth import Principal  # noqa: E402
from akson_common.db import Database  # noqa: E402
from akson_common.policy import PolicyContext, PolicyEnforcementPoint, ResourceRef  # noqa: E402
from tests.support import (  # noqa: E402
    PractitionerFacts,
    client_form,
    exchange_form,
    new_patient_id,
    practitioner_token,
    register_practitioner,
    run_secret,
    system_token,
)


async def bench(stack: Stack) -> None:
    await bench_database(stack.endpoints)
    await bench_policy(stack.endpoints)
    await bench_services(stack.endpoints)


async def bench_database(endpoints: dict[str, Any]) -> None:
    """FerretDB on PostgreSQL: the writes and reads the services make."""
    database = Database(endpoints["mongo"]["url"], f"bench_{uuid.uuid4().hex[:8]}")
    collection = database.collection("documents")
    document = {"category": "general", "body": "x" * 1000}
    report(
        "ferretdb insert_one (1 KiB doc)",
        await timed(500, lambda i: collection.insert_one({**document, "_id": f"s{i}"})),
    )
    started = time.perf_counter()
    batch = [{**document, "_id": f"b{i}", "patient": f"p{i % 500}"} for i in range(10_000)]
    for chunk in range(0, len(batch), 1000):
        await collection.insert_many(batch[chunk : chunk + 1000])
    seconds = time.perf_counter() - started
    print(f"{'ferretdb insert_many (1000 per batch)':<46} {10_000 / seconds:,.0f} docs/s")  # noqa: T201
    report(
        "ferretdb find_one by _id (10,500 docs)",
        await timed(500, lambda i: collection.find_one({"_id": f"b{i * 17 % 10_000}"})),
    )
    await collection.create_index("patient")
    report(
        "ferretdb find by indexed field (patient)",
        await timed(200, lambda i: collection.find({"patient": f"p{i % 50}"}).to_list()),
    )
    report(
        "ferretdb update_one $set + $push (outbox write)",
        await timed(
            300,
            lambda i: collection.update_one(
                {"_id": f"b{i}"}, {"$set": {"v": i}, "$push": {"_outbox": {"id": str(i)}}}
            ),
        ),
    )
    await database.client.drop_database(database.db.name)
    await database.close()


async def bench_policy(endpoints: dict[str, Any]) -> None:
    """One decision over HTTP, as every enforcement point asks it."""
    pep = PolicyEnforcementPoint(
        endpoints["opa"]["url"], timeout_seconds=2.0, token=run_secret(endpoints, "opa_token")
    )
    await pep.start()
    subject = Principal(id="hpr:1", kind="practitioner", hpr_number="1", profession="LE", unit="u1")
    relations = [{"patient": "17858000076", "practitioner": "1", "kind": "gp_list", "active": True}]
    resource = ResourceRef(type="DocumentReference", patient="17858000076", category="general")
    report(
        "opa decision over HTTP (PEP, allow)",
        await timed(
            1000,
            lambda i: pep.decide(
                subject, "read", resource, PolicyContext(care_relations=relations)
            ),
        ),
    )
    await pep.close()


async def bench_services(endpoints: dict[str, Any]) -> None:
    """A journal read (token, policy, database) and identity's two grants."""
    journal, masterdata = (
        endpoints["services"]["journal"]["app"],
        endpoints["services"]["masterdata"]["app"],
    )
    patient, hpr = new_patient_id(), "9100001"
    registry = system_token(endpoints, "masterdata", "CareRelation.write")
    gp_facts = PractitionerFacts(hpr_number=hpr, profession="LE", unit="u-bench")
    register_practitioner(endpoints, gp_facts)
    gp = practitioner_token(endpoints, gp_facts, "journal")
    async with httpx.AsyncClient(timeout=10) as http:
        await http.put(
            f"{masterdata}/care-relations/rel-bench",
            headers={"authorization": f"Bearer {registry}"},
            json={
                "relation_id": "rel-bench",
                "patient": patient,
                "kind": "gp_list",
                "practitioner": hpr,
                "period_start": "2020-01-01",
            },
        )
        headers = {"authorization": f"Bearer {gp}"}
        body = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{patient}"},
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": base64.b64encode(b"note").decode(),
                    }
                }
            ],
        }
        for _ in range(100):
            created = await http.post(
                f"{journal}/fhir/R4/DocumentReference", json=body, headers=headers
            )
            if created.status_code == 201:
                break
            await asyncio.sleep(0.1)  # the care relation is still travelling as an event
        location = created.headers["location"]

        async def read(_: int) -> None:
            response = await http.get(f"{journal}{location}", headers=headers)
            assert response.status_code == 200

        samples = await timed(500, read)
        report("journal GET DocumentReference (token+OPA+db)", samples)
        print(f"{'  sequential throughput':<46} {1000 * len(samples) / sum(samples):,.0f} req/s")  # noqa: T201
        await bench_identity(endpoints, http, hpr, gp_facts)


async def bench_identity(
    endpoints: dict[str, Any], http: httpx.AsyncClient, hpr: str, gp_facts: PractitionerFacts
) -> None:
    """Identity's client credentials grant and token exchange."""
    token_endpoint = endpoints["identity"]["token_endpoint"]
    # assertions are signed beforehand: the figure is identity's work, not the client's
    forms = [client_form(endpoints, "masterdata", "Patient.read") for _ in range(200)]

    async def client_credentials(i: int) -> None:
        answer = await http.post(token_endpoint, data=forms[i])
        assert answer.status_code == 200, answer.text

    report("identity client credentials (private_key_jwt)", await timed(200, client_credentials))
    upstream = mint_upstream(endpoints, "personnel", hpr, unit=gp_facts.unit_number)

    async def exchange(_: int) -> None:
        answer = await http.post(token_endpoint, data=exchange_form(upstream, "journal"))
        assert answer.status_code == 200, answer.text

    report("identity token exchange (practitioner)", await timed(200, exchange))


def main() -> None:
    stack = Stack(run_dir=ROOT / ".run" / f"bench-{uuid.uuid4().hex[:8]}")
    took = stack.up()
    print(f"stack up in {took:.1f} s")  # noqa: T201
    try:
        asyncio.run(bench(stack))
    finally:
        stack.down()
    shutil.rmtree(stack.run_dir, ignore_errors=True)  # kept only when the benchmark failed


if __name__ == "__main__":
    main()
