"""`make seed`: generate the synthetic population and load it into the running stack through
the bulk import API (`make up` first). Prints how long each file took to load.

    python loadtests/seed_load.py [--run-dir .run] [--persons 10000] [--chunk 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "infra" / "local")]

from masterdata.seed import generate, write  # noqa: E402
from tests.support import system_token  # noqa: E402

SCOPES = "Patient.write Practitioner.write Organization.write CareRelation.write"


def load(run_dir: Path, persons: int, chunk: int) -> None:
    endpoints = json.loads((run_dir / "endpoints.json").read_text())
    base = endpoints["services"]["masterdata"]["app"]
    started = time.monotonic()
    paths = write(generate(persons), run_dir / "seed")
    print(f"generated in {time.monotonic() - started:.1f} s into {run_dir / 'seed'}", flush=True)  # noqa: T201
    with httpx.Client(timeout=300.0) as client:
        for kind, path in paths.items():
            lines = path.read_bytes().splitlines(keepends=True)
            totals = {"received": 0, "created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
            started = time.monotonic()
            for start in range(0, len(lines), chunk):
                # platform tokens live five minutes: a fresh one per chunk
                token = system_token(endpoints, "masterdata", SCOPES)
                headers = {
                    "authorization": f"Bearer {token}",
                    "content-type": "application/x-ndjson",
                }
                response = client.post(
                    f"{base}/import/{kind}", content=b"".join(lines[start : start + chunk]),
                    headers=headers,
                )  # fmt: skip
                response.raise_for_status()
                report = response.json()
                for key in totals:
                    totals[key] += report[key]
            took = time.monotonic() - started
            counts = " ".join(f"{k}={v}" for k, v in totals.items())
            rate = f"{len(lines) / took:7.0f} lines/s"
            print(f"{kind:<16} {took:6.1f} s  {rate}  {counts}", flush=True)  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run")
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=2_000)
    args = parser.parse_args()
    load(args.run_dir.resolve(), args.persons, args.chunk)


if __name__ == "__main__":
    main()
