"""The first ten minutes: the demo population loads quickly and idempotently, the commands
`make up` prints answer as they say, and every "Try it" block of README.md runs as it stands
(extracted from the README, run with bash against this session's stack with the demo loaded,
`make token` pointed at its run folder by AKSON_RUN_DIR).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from demo import DEMO_IDENTIFIER, Demo, Report, load, persona_token, try_commands
from stack import ROOT

from tests.integration.conftest import Platform, eventually
from tests.support import handed

pytestmark = pytest.mark.integration

BLOCK = re.compile(r"^```sh try-it\n(.*?)^```$", re.MULTILINE | re.DOTALL)
MARK = "::try-it block::"
# the demo is a handful of records: seconds, even on this shared 2-core machine
LOAD_SECONDS = 60.0


@pytest.fixture(scope="module")
def loads(platform: Platform) -> tuple[Report, Report]:
    """The demo loaded twice into the session's stack."""
    for identifier in Demo.read().identifiers():
        handed(identifier)  # the session's log scan looks for every one of them
    return load(platform.endpoints), load(platform.endpoints)


def shell_environment() -> dict[str, str]:
    """A newcomer's shell: this test runs inside the workspace's virtual environment (``uv
    run``), their shell does not (`make` finds its own Python, and uv through it)."""
    venv = str(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv)]
    env["PATH"] = os.pathsep.join(path)
    return env


def bash(script: str, run_dir: str | None = None, timeout: float = 300.0) -> str:
    env = {**shell_environment(), **({"AKSON_RUN_DIR": run_dir} if run_dir else {})}
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{script}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def held_per_patient(platform: Platform, http: httpx.Client) -> Counter[str]:
    """What the GP (every demo patient is on her list) finds of each type, per patient."""
    demo = Demo.read()
    gp = {"authorization": f"Bearer {persona_token(platform.endpoints, 'gp', demo=demo)}"}
    base = platform.endpoints["fhir"]["base"]
    found: Counter[str] = Counter()
    for patient in demo.data["patients"]:
        for kind in {r["resource"]["resourceType"] for r in demo.data["records"]}:
            answer = http.get(
                f"{base}/{kind}",
                params={"patient": patient["national_id"], "_summary": "count"},
                headers=gp,
            )
            assert answer.status_code == 200, answer.text
            found[f"{patient['given_name']} {kind}"] = answer.json()["total"]
    return found


def test_the_demo_loads_in_seconds_and_a_second_load_changes_nothing(
    platform: Platform, http: httpx.Client, loads: tuple[Report, Report]
) -> None:
    first, second = loads
    demo = Demo.read()
    records = Counter(r["resource"]["resourceType"] for r in demo.data["records"])
    assert first.held == {
        "organisations": len(demo.data["organisations"]),
        "practitioners": len(demo.data["practitioners"]),
        "persons": len(demo.data["patients"]),
        "care-relations": len(demo.data["care_relations"]),
        "blocks": len(demo.data["blocks"]),
        "apps": len(demo.data["apps"]),
        **records,
    }
    # the session's stack was empty of the demo: the first load made everything, the second
    # nothing (master data counted it unchanged, the journal's conditional creates found it)
    assert first.added == first.held, first.line()
    assert second.held == first.held and sum(second.added.values()) == 0, second.line()
    assert first.seconds < LOAD_SECONDS and second.seconds < LOAD_SECONDS
    print(f"\nfirst load: {first.line()}\nsecond load: {second.line()}")  # noqa: T201
    # the platform's own count agrees, and a third load leaves it as it was
    name = {p["national_id"]: p["given_name"] for p in demo.data["patients"]}
    expected = Counter(
        f"{name[r['patient']]} {r['resource']['resourceType']}" for r in demo.data["records"]
    )
    before = held_per_patient(platform, http)
    assert +before == expected
    load(platform.endpoints)
    assert held_per_patient(platform, http) == before
    # every record carries its demo identifier (what the conditional creates match on)
    gp = {"authorization": f"Bearer {persona_token(platform.endpoints, 'gp', demo=demo)}"}
    record = demo.data["records"][0]
    matched = http.get(
        f"{platform.endpoints['fhir']['base']}/{record['resource']['resourceType']}",
        params={"patient": record["patient"], "identifier": f"{DEMO_IDENTIFIER}|{record['key']}"},
        headers=gp,
    )
    assert matched.status_code == 200 and matched.json()["total"] == 1, matched.text


def test_the_commands_make_up_prints_answer_as_they_say(
    platform: Platform, loads: tuple[Report, Report]
) -> None:
    run_dir = Path(platform.endpoints["run_dir"])
    commands = try_commands(platform.endpoints, run_dir)
    assert len(commands) == 4
    (_, summary), (_, refused), (_, access_log), (_, console) = commands
    opened = console.split()
    assert opened[0] == "xdg-open" and opened[1] == f"{platform.url('console')}/"
    # the page it opens is the console's, and it asks whoever comes to log in
    home = httpx.get(opened[1], timeout=10.0)
    assert home.status_code == 200 and "/login" in home.text, home.text[:300]
    assert "AKSON_RUN_DIR=" in summary  # a run folder other than the default is named
    lines = bash(summary).splitlines()
    assert "AllergyIntolerance: Allergy to penicillin" in lines
    assert {"MedicationStatement: metformin", "MedicationStatement: ramipril"} <= set(lines)
    assert bash(refused).split() == ["403"]
    assert any("Kari Fjord" in line and " read " in line for line in bash(access_log).splitlines())


def read_by_gp_since(platform: Platform, since: str) -> Callable[[], bool]:
    """Whether Astrid's access log lists a read by her GP at or after ``since``."""
    demo = Demo.read()
    gp = demo.persona("gp")["hpr_number"]
    token = persona_token(platform.endpoints, "citizen", "audit", demo=demo)

    def listed() -> bool:
        answer = httpx.get(
            f"{platform.url('audit')}/audit/access-log",
            headers={"authorization": f"Bearer {token}"},
            timeout=10.0,
        )
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return any(
            a["hpr"] == gp and a["action"] == "read" and str(a["at"])[:19] >= since for a in items
        )

    return listed


def test_every_try_it_block_of_the_readme_runs_as_it_says(
    platform: Platform, loads: tuple[Report, Report]
) -> None:
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    began = time.monotonic()
    script = "".join(f"echo '{MARK}'\n{block}" for block in blocks)
    outputs = [
        part.strip().splitlines()
        for part in bash(script, run_dir=platform.endpoints["run_dir"]).split(MARK)[1:]
    ]
    took = time.monotonic() - began
    print(f"\n{len(blocks)} try-it blocks ran in {took:.1f} s")  # noqa: T201
    assert len(outputs) == 6, "the README's Try it blocks changed: say here what they show"
    setup, summary, stranger, access_log, nurses, refusals = outputs
    assert setup == []
    assert {
        "AllergyIntolerance: Allergy to penicillin",
        "MedicationStatement: metformin",
        "MedicationStatement: ramipril",
        "DocumentReference: Kontroll diabetes",
        "DocumentReference: Hjemmebesøk",
        "DiagnosticReport: Comprehensive metabolic panel",
        # the latest observations (since issue 19's $summary: measurements and lab values)
        "Observation: C reactive protein [Mass/volume] in Serum or Plasma",
        "Observation: Hemoglobin A1c/Hemoglobin.total in Blood",
    } == set(summary)
    assert stranger == ["403", "0"]
    assert any("Kari Fjord" in line and " read " in line for line in access_log)
    counts = dict(line.removesuffix(" entries").split(": ") for line in nurses)
    assert int(counts["nurse"]) > 0 and counts["blocked"] == "0", nurses
    stranger_hpr, blocked_hpr = (
        Demo.read().persona(p)["hpr_number"] for p in ("stranger", "blocked")
    )
    assert any(f"hpr:{blocked_hpr}" in line and "blocked" in line for line in refusals)
    assert any(f"hpr:{stranger_hpr}" in line and "no_care_relation" in line for line in refusals)
    # the GP's summary read of this very run reached Astrid's access log
    eventually(read_by_gp_since(platform, started), timeout=15)
