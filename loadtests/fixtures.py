"""What the benchmarks seed and the tokens they use: GPs and their lists of patients through
master data, clinical notes, platform tokens for practitioners.

Shared by ``bench_access.py`` (the synthetic population of ``make seed``) and ``load.py``
(a few GPs and their patients imported through master data's NDJSON API).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from stack import mint_upstream

from tests.support import (
    PractitionerFacts,
    exchange_form,
    issued,
    new_patient_id,
    register_practitioner,
    system_token,
    token_response,
)
from tests.support import (
    practitioner_token as exchanged_token,  # waits until identity's projection has the GP
)

FHIR = "/fhir/R4"
REGISTRY_SCOPES = "Patient.write CareRelation.write"
NDJSON = "application/x-ndjson"
# platform tokens live five minutes: a cached one is replaced well before
TOKEN_REFRESH_SECONDS = 200.0


def seeded_gps(run_dir: Path, count: int) -> list[tuple[str, str, list[str]]]:
    """(hpr, unit, patients) for ``count`` seeded doctors with a GP list."""
    doctors = {}
    for line in (run_dir / "seed" / "practitioners.ndjson").read_text().splitlines():
        p = json.loads(line)
        if p["status"] == "active" and any(a["profession"] == "LE" for a in p["authorisations"]):
            doctors[p["hpr_number"]] = p["employments"][0]["unit"]
    lists: dict[str, list[str]] = {}
    for line in (run_dir / "seed" / "care-relations.ndjson").read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == "gp_list" and r.get("practitioner") in doctors and not r.get("period_end"):
            lists.setdefault(r["practitioner"], []).append(r["patient"])
    chosen = sorted(lists, key=lambda hpr: -len(lists[hpr]))[:count]
    return [(hpr, doctors[hpr], lists[hpr]) for hpr in chosen]


def text_note(patient: str, text: str) -> dict[str, Any]:
    """A DocumentReference of the general category holding ``text`` as a plain-text note."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient}"},
        "category": [{"coding": [{"code": "general"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }


def note(patient: str, i: int, size: int = 0) -> dict[str, Any]:
    """A DocumentReference with a plain-text note; ``size``: pad the note's text to about that
    many bytes (base64 adds a third), so the stored resource is about ``size`` * 4/3 + 250."""
    text = f"bench note {i}"
    text += " lorem ipsum" * max(0, (size - len(text)) // 12)
    return text_note(patient, text)


async def practitioner_token(endpoints: dict[str, Any], hpr: str, unit: str) -> str:
    """Exchanged once identity's projection (fed by master data's events) knows the doctor."""
    deadline = time.monotonic() + 900
    while True:
        upstream = mint_upstream(endpoints, "personnel", hpr, unit=unit, lifetime=600)
        answer = token_response(endpoints, exchange_form(upstream, "journal"))
        if answer.status_code == 200 or time.monotonic() > deadline:
            return issued(answer)
        await asyncio.sleep(1.0)


# -- a few GPs and their lists, imported through master data ---------------------------------


def person(national_id: str, given_name: str = "Last") -> dict[str, str]:
    return {
        "national_id": national_id,
        "given_name": given_name,
        "family_name": "Syntetisk",
        "municipality": "4601",
    }


def gp_relation(patient: str, gp: PractitionerFacts) -> dict[str, Any]:
    return {
        "relation_id": f"gp-{patient}",
        "patient": patient,
        "kind": "gp_list",
        "practitioner": gp.hpr_number,
        "unit": gp.unit_number,
        "period_start": "2020-01-01",
    }


def import_ndjson(
    endpoints: dict[str, Any], kind: str, records: list[dict[str, Any]], chunk: int = 2_000
) -> None:
    """Master data's bulk import (``/import/{kind}``), ``chunk`` lines a request."""
    base = endpoints["services"]["masterdata"]["app"]
    with httpx.Client(timeout=600.0) as http:
        for start in range(0, len(records), chunk):
            lines = [json.dumps(r) for r in records[start : start + chunk]]
            token = system_token(endpoints, "masterdata", REGISTRY_SCOPES)  # one per chunk
            answer = http.post(
                f"{base}/import/{kind}",
                content="\n".join(lines) + "\n",
                headers={"authorization": f"Bearer {token}", "content-type": NDJSON},
            )
            answer.raise_for_status()
            if answer.json().get("rejected"):
                raise SystemExit(f"import {kind}: {answer.text[:500]}")


def import_patients(
    endpoints: dict[str, Any], gps: list[PractitionerFacts], count: int, chunk: int = 2_000
) -> dict[str, PractitionerFacts]:
    """``count`` new persons, each on the list of one of ``gps`` (round robin): patient -> GP."""
    patients = {new_patient_id(): gps[n % len(gps)] for n in range(count)}
    import_ndjson(endpoints, "persons", [person(p) for p in patients], chunk)
    import_ndjson(
        endpoints, "care-relations", [gp_relation(p, gp) for p, gp in patients.items()], chunk
    )
    return patients


def load_gps(count: int) -> list[PractitionerFacts]:
    """``count`` GPs, each at their own office (synthetic HPR numbers from 9,100,000)."""
    return [
        PractitionerFacts(
            hpr_number=str(9_100_000 + n), unit=f"load-gp-office-{n}", organisation="load-gp"
        )
        for n in range(count)
    ]


@dataclass
class Tokens:
    """Platform tokens for practitioners and systems, minted on first use and replaced after
    ``TOKEN_REFRESH_SECONDS`` (thread-safe: locust's users share one)."""

    endpoints: dict[str, Any]
    _cache: dict[str, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _cached(self, key: str, mint: Callable[[], str]) -> str:
        with self._lock:
            token, at = self._cache.get(key, ("", 0.0))
            if time.monotonic() - at > TOKEN_REFRESH_SECONDS:
                token = mint()
                self._cache[key] = (token, time.monotonic())
            return token

    def practitioner(self, gp: PractitionerFacts, audience: str = "journal") -> str:
        return self._cached(
            f"{gp.hpr_number}:{audience}",
            lambda: exchanged_token(self.endpoints, gp, audience, timeout=300.0),
        )

    def upstream(self, gp: PractitionerFacts) -> str:
        """An upstream (HelseID-like) token to exchange, valid ten minutes."""
        return self._cached(
            f"upstream:{gp.hpr_number}",
            lambda: mint_upstream(
                self.endpoints, "personnel", gp.hpr_number, unit=gp.unit_number, lifetime=600
            ),
        )


@dataclass
class Seeded:
    """What ``seed`` made: GPs, patients (-> their GP) and documents (id, patient)."""

    gps: list[PractitionerFacts]
    patients: dict[str, PractitionerFacts]
    documents: list[tuple[str, str]]


def seed(
    endpoints: dict[str, Any],
    tokens: Tokens,
    gp_count: int = 5,
    patient_count: int = 50,
    documents_per_patient: int = 10,
    note_bytes: int = 700,
    log: Callable[[str], None] = print,
) -> Seeded:
    """GPs registered through master data's API, their patients through its NDJSON import,
    then ``documents_per_patient`` notes of ~1 KB each recorded at the journal (retried while
    the journal's projection catches up with master data's events)."""
    gps = load_gps(gp_count)
    for gp in gps:
        register_practitioner(endpoints, gp)
    started = time.monotonic()
    patients = import_patients(endpoints, gps, patient_count)
    journal = endpoints["services"]["journal"]["app"]
    documents: list[tuple[str, str]] = []
    with httpx.Client(timeout=30.0) as http:
        for i in range(documents_per_patient):
            for patient, gp in patients.items():
                deadline = time.monotonic() + 300
                while True:
                    created = http.post(
                        f"{journal}{FHIR}/DocumentReference",
                        json=note(patient, i, note_bytes),
                        headers={"authorization": f"Bearer {tokens.practitioner(gp)}"},
                    )
                    if created.status_code == 201:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"journal refused a seeded patient: {created.text}")
                    time.sleep(0.5)  # the projection is still catching up
                documents.append((created.headers["location"].rsplit("/", 1)[-1], patient))
    log(
        f"seeded {gp_count} GPs, {len(patients)} patients, {len(documents)} documents "
        f"in {time.monotonic() - started:.1f} s"
    )
    return Seeded(gps, patients, documents)
