"""The traffic of `make chaos` (loadtests/chaos.py): locust users in a process of their own.

The fault suite's conductor starts and kills the platform's processes from threads; locust
monkey-patches the standard library (gevent), so its users run here, in a separate process,
and append one JSON line per request to ``--out`` (every second):
``{"t": <unix time>, "kind": "read"|"write", "status": <http status>, "ms": <latency>,
"decisions": <akson-decision-id header>, "leak": <a body that is not a 200 holds part of a
document>, "location": <a created document>}``.

    python loadtests/chaos_traffic.py --plan PLAN.json --out OUT.jsonl --users 8
        --kind read|write [--rate R] --stop-file STOP [--max-seconds S]

PLAN.json (written by the conductor): ``{"endpoints": ..., "gps": [{"hpr_number", "unit",
"organisation"}], "patients": {patient: gp index}, "documents": [[id, patient]],
"leaks": [<text only a document's body holds>]}``. The users stop when STOP exists.
"""

from __future__ import annotations

# first: locust monkey-patches the standard library (gevent) before anything else uses it
import locust

# isort: split

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from locust.env import Environment

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra" / "local"), str(ROOT), str(ROOT / "loadtests")]

from fixtures import FHIR, Tokens, text_note  # noqa: E402

from tests.support import PractitionerFacts  # noqa: E402


@dataclass
class Plan:
    tokens: Tokens
    gps: list[PractitionerFacts]
    patients: dict[str, int]
    documents: list[tuple[str, str]]
    leaks: list[str]
    records: list[dict[str, Any]]

    def bearer(self, patient: str) -> dict[str, str]:
        token = self.tokens.practitioner(self.gps[self.patients[patient]])
        return {"authorization": f"Bearer {token}"}


class ChaosUser(locust.FastHttpUser):
    abstract = True
    plan: ClassVar[Plan]
    wait_time = locust.constant(0)

    def record(self, kind: str, answer: Any, started: float, **extra: Any) -> None:
        status = int(answer.status_code or 0)
        body = answer.text or ""
        self.plan.records.append(
            {
                "t": time.time(),
                "kind": kind,
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "decisions": answer.headers.get("akson-decision-id", "") if answer.headers else "",
                "leak": status != 200 and any(marker in body for marker in self.plan.leaks),
                **extra,
            }
        )


class Reader(ChaosUser):
    """An authorised read of a seeded document by the patient's GP."""

    @locust.task
    def read(self) -> None:
        document_id, patient = random.choice(self.plan.documents)
        started = time.perf_counter()
        with self.client.get(
            f"{FHIR}/DocumentReference/{document_id}",
            headers=self.plan.bearer(patient),
            name="read",
            catch_response=True,
        ) as answer:
            self.record("read", answer, started)
            answer.success()  # the conductor judges every answer from the records


class Writer(ChaosUser):
    """A note recorded for a seeded patient; the location of each acknowledged write kept."""

    @locust.task
    def write(self) -> None:
        patient = random.choice(list(self.plan.patients))
        started = time.perf_counter()
        with self.client.post(
            f"{FHIR}/DocumentReference",
            json=text_note(patient, f"chaos write {time.time_ns()}"),
            headers=self.plan.bearer(patient),
            name="write",
            catch_response=True,
        ) as answer:
            location = answer.headers.get("location", "") if answer.headers else ""
            self.record("write", answer, started, location=location)
            answer.success()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--kind", choices=("read", "write"), default="read")
    parser.add_argument("--rate", type=float, default=None, help="requests/s over all users")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args()
    given = json.loads(args.plan.read_text())
    gps = [PractitionerFacts(**gp) for gp in given["gps"]]
    ChaosUser.plan = Plan(
        Tokens(given["endpoints"]),
        gps,
        given["patients"],
        [(d, p) for d, p in given["documents"]],
        given["leaks"],
        [],
    )
    user: type[ChaosUser] = Reader if args.kind == "read" else Writer
    if args.rate:
        user = type(
            f"{user.__name__}Paced",
            (user,),
            {"wait_time": locust.constant_throughput(args.rate / args.users)},
        )
    for gp in gps:  # every token minted before the clock starts
        ChaosUser.plan.tokens.practitioner(gp)
    host = given["endpoints"]["services"]["journal"]["app"]
    environment = Environment(user_classes=[user], host=host)
    runner = environment.create_local_runner()
    runner.start(args.users, spawn_rate=args.users)
    deadline = time.monotonic() + args.max_seconds
    print("traffic started", flush=True)  # noqa: T201
    written = 0
    with args.out.open("w") as out:
        # the records so far, every second: the conductor counts them while the users run
        while not args.stop_file.exists() and time.monotonic() < deadline:
            time.sleep(1.0)
            written = _append(out, ChaosUser.plan.records, written)
        runner.quit()
        _append(out, ChaosUser.plan.records, written)


def _append(out: Any, records: list[dict[str, Any]], written: int) -> int:
    now = len(records)
    out.write("".join(json.dumps(r) + "\n" for r in records[written:now]))
    out.flush()
    return now


if __name__ == "__main__":
    main()
