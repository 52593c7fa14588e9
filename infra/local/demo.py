"""The demo population: a small, deterministic world to try the platform with (`make up` loads it).

    python infra/local/demo.py load [--run-dir DIR]     load it into the running platform
                                                        (idempotent), print what it holds
    python infra/local/demo.py token PERSONA [--audience AUD] [--run-dir DIR]
                                                        a platform token for a demo persona
    python infra/local/demo.py try [--run-dir DIR]      the commands to try first

Two municipalities, two GP offices, a home-care unit, a nursing home, five practitioners (a GP,
a home-care nurse, a nursing-home nurse, a GP without any relation, a nurse the patient blocked),
four patients (one with a protected address) with their care relations, and a few documents,
allergies, medications and lab results: the data is infra/local/demo.json. Everything goes in
through the platform's own APIs, decided by the policy like any other write: master data's NDJSON
import (idempotent on the records' identifiers), consent's directives (a check first), the
journal through the FHIR base with conditional creates (``If-None-Exist`` on the record's demo
identifier; the lab, which may write but not search, after a check by the GP). Never an
identifier in what it prints while loading: counts and seconds only.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import shlex
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from identity_flows import citizen_token, practitioner_token, system_token
from stack import DEFAULT_RUN_DIR, ROOT, discover_services, fhir_base_service

from akson_common.fhir import FHIR_JSON

DATA = Path(__file__).with_name("demo.json")
# tokens are for the platform's one FHIR base unless asked otherwise
GATEWAY = fhir_base_service(discover_services()) or "gateway"
DEMO_IDENTIFIER = "urn:akson:demo"
NDJSON = "application/x-ndjson"
# master data's import kinds in the order they depend on each other, and the scope each needs
IMPORTS = {
    "organisations": "Organization.write",
    "practitioners": "Practitioner.write",
    "persons": "Patient.write",
    "care-relations": "CareRelation.write",
}
CONSENT_SCOPES = "Consent.read Consent.search Consent.write"
# how long a write may wait for the services' projections (master data's and consent's events)
PROJECTION_SECONDS = 60.0
# answers that mean "not yet": a projection has not caught up with master data's events
NOT_YET = {403, 404, 409}
# where a type references its patient
PATIENT_FIELD = {"AllergyIntolerance": "patient"}
Json = dict[str, Any]


@dataclass(frozen=True)
class Demo:
    """The demo data (demo.json) and who its personas are."""

    data: Json

    @classmethod
    def read(cls, path: Path = DATA) -> Demo:
        return cls(json.loads(path.read_text()))

    def persona(self, name: str) -> Json:
        for entry in [*self.data["practitioners"], *self.data["patients"], *self.data["systems"]]:
            if entry.get("persona") == name:
                return dict(entry)
        raise KeyError(name)

    def personas(self) -> dict[str, str]:
        """persona -> who it is."""
        return {
            entry["persona"]: ", ".join(
                part
                for part in (
                    f"{entry.get('given_name', '')} {entry.get('family_name', '')}".strip(),
                    entry["about"],
                )
                if part
            )
            for group in ("practitioners", "patients", "systems")
            for entry in self.data[group]
            if "persona" in entry
        }

    def organisation(self, number: str) -> Json:
        return next(o for o in self.data["organisations"] if o["org_number"] == number)

    def identifiers(self) -> list[str]:
        """Every national id and HPR number in the demo (what no log line may hold)."""
        return [
            *(p["national_id"] for p in self.data["patients"]),
            *(p["hpr_number"] for p in self.data["practitioners"]),
        ]

    def import_records(self) -> dict[str, list[Json]]:
        """Master data's import lines, by kind, in loading order."""
        practitioners = [
            {
                "hpr_number": p["hpr_number"],
                "given_name": p["given_name"],
                "family_name": p["family_name"],
                "status": "active",
                "status_from": "2000-01-01",
                "authorisations": [{"profession": p["profession"], "valid_from": "2000-01-01"}],
                "employments": [{"unit": p["unit"], "period_start": "2010-01-01"}],
            }
            for p in self.data["practitioners"]
        ]
        persons = [
            {k: v for k, v in p.items() if k not in ("persona", "about")}
            for p in self.data["patients"]
        ]
        return {
            "organisations": self.data["organisations"],
            "practitioners": practitioners,
            "persons": persons,
            "care-relations": self.data["care_relations"],
        }


# -- tokens --------------------------------------------------------------------------------


def persona_token(
    endpoints: Json, persona: str, audience: str = GATEWAY, *, demo: Demo | None = None
) -> str:
    """A platform token for a demo persona, through identity's real flows (a practitioner's
    once identity's projection has the demo's facts about them)."""
    demo = demo or Demo.read()
    entry = demo.persona(persona)
    if "client" in entry:
        client_id = endpoints["test_client"]["dev_clients"][entry["client"]]
        return system_token(endpoints, audience, entry["scope"], client_id)
    if "national_id" in entry:
        return citizen_token(endpoints, entry["national_id"], audience)
    unit = demo.organisation(entry["unit"])
    expect = {
        "profession": entry["profession"],
        "unit": entry["unit"],
        "organisation": unit.get("parent") or entry["unit"],
        "municipality": unit["municipality"],
    }
    return practitioner_token(
        endpoints, entry["hpr_number"], audience, unit=entry["unit"], expect=expect, timeout=15.0
    )


# -- loading -------------------------------------------------------------------------------


@dataclass
class Report:
    """What the demo holds after a load, and what this load added."""

    held: Counter[str] = field(default_factory=Counter)
    added: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def line(self) -> str:
        held = ", ".join(f"{n} {kind}" for kind, n in self.held.items())
        added = sum(self.added.values())
        return f"demo data: {held} ({added} new) loaded in {self.seconds:.1f} s"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _refused(what: str, answer: httpx.Response) -> SystemExit:
    return SystemExit(f"demo: {what} answered {answer.status_code}: {answer.text[:300]}")


def _patiently(send: Callable[[], httpx.Response]) -> httpx.Response:
    """``send`` until it is answered other than "not yet" (a projection catching up)."""
    deadline = time.monotonic() + PROJECTION_SECONDS
    while True:
        answer = send()
        if answer.status_code not in NOT_YET or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


class Loader:
    def __init__(self, endpoints: Json, demo: Demo, http: httpx.Client) -> None:
        self.endpoints, self.demo, self.http = endpoints, demo, http
        self.report = Report()
        self.fhir = str(endpoints["fhir"]["base"])
        self._tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}  # record key -> "Type/id"

    def token(self, persona: str) -> str:
        if persona not in self._tokens:
            self._tokens[persona] = persona_token(self.endpoints, persona, demo=self.demo)
        return self._tokens[persona]

    def master_data(self) -> None:
        base = self.endpoints["services"]["masterdata"]["app"]
        token = system_token(self.endpoints, "masterdata", " ".join(IMPORTS.values()))
        for kind, records in self.demo.import_records().items():
            answer = self.http.post(
                f"{base}/import/{kind}",
                content="".join(json.dumps(r) + "\n" for r in records),
                headers={**_bearer(token), "content-type": NDJSON},
            )
            if answer.status_code != 200 or answer.json()["rejected"]:
                raise _refused(f"master data's import of {kind}", answer)
            self.report.held[kind] = len(records)
            self.report.added[kind] = answer.json()["created"]

    def blocks(self) -> None:
        base = self.endpoints["services"]["consent"]["app"]
        token = system_token(self.endpoints, "consent", CONSENT_SCOPES)
        for block in self.demo.data["blocks"]:
            listed = _patiently(
                partial(
                    self.http.get,
                    f"{base}/directives",
                    params={"patient": block["patient"], "status": "active"},
                    headers=_bearer(token),
                )
            )
            if listed.status_code != 200:
                raise _refused("consent's list of directives", listed)
            exists = any(
                d["kind"] == "block" and d.get("practitioner") == block["practitioner"]
                for d in listed.json()["items"]
            )
            if not exists:
                body = {"kind": "block", **{k: v for k, v in block.items() if k != "key"}}
                created = _patiently(
                    partial(self.http.post, f"{base}/directives", json=body, headers=_bearer(token))
                )
                if created.status_code != 201:
                    raise _refused("consent's registration of a block", created)
                self.report.added["blocks"] += 1
            self.report.held["blocks"] += 1

    def apps(self) -> None:
        """The demo's SMART apps in identity's app registry (as its administrator)."""
        base = f"{self.endpoints['identity']['issuer']}/apps"
        token = persona_token(self.endpoints, "admin", "identity", demo=self.demo)
        for app in self.demo.data.get("apps", []):
            known = self.http.get(f"{base}/{app['client_id']}", headers=_bearer(token))
            if known.status_code == 404:
                created = self.http.post(base, json=app, headers=_bearer(token))
                if created.status_code != 201:
                    raise _refused("identity's registration of an app", created)
                self.report.added["apps"] += 1
            elif known.status_code != 200:
                raise _refused("identity's app registry", known)
            self.report.held["apps"] += 1

    def resource(self, record: Json) -> Json:
        resource: Json = copy.deepcopy(record["resource"])
        kind = resource["resourceType"]
        resource[PATIENT_FIELD.get(kind, "subject")] = {"reference": f"Patient/{record['patient']}"}
        resource["identifier"] = [{"system": DEMO_IDENTIFIER, "value": record["key"]}]
        text = resource.pop("text", None)
        if text is not None:
            data = base64.b64encode(text.encode()).decode()
            resource["content"] = [{"attachment": {"contentType": "text/plain", "data": data}}]
        if "result" in resource:
            resource["result"] = [
                {"reference": self.ids[r["demo_ref"]]} for r in resource["result"]
            ]
        return resource

    def found(self, record: Json, kind: str) -> str | None:
        """The record's id if the GP (on every demo patient's list) finds it, else None."""
        answer = _patiently(
            partial(
                self.http.get,
                f"{self.fhir}/{kind}",
                params={
                    "patient": record["patient"],
                    "identifier": f"{DEMO_IDENTIFIER}|{record['key']}",
                },
                headers=_bearer(self.token("gp")),
            )
        )
        if answer.status_code != 200:
            raise _refused(f"a search of {kind}", answer)
        entries = answer.json().get("entry") or []
        return str(entries[0]["resource"]["id"]) if entries else None

    def records(self) -> None:
        for record in self.demo.data["records"]:
            resource = self.resource(record)
            kind = resource["resourceType"]
            headers = {**_bearer(self.token(record["writer"])), "content-type": FHIR_JSON}
            # a writer that may search makes a conditional create; the lab may only write
            searches = record["writer"] != "lab"
            existing = None if searches else self.found(record, kind)
            if existing is None:
                if searches:
                    headers["if-none-exist"] = (
                        f"patient={record['patient']}&identifier={DEMO_IDENTIFIER}|{record['key']}"
                    )
                answer = _patiently(
                    partial(
                        self.http.post,
                        f"{self.fhir}/{kind}",
                        content=json.dumps(resource),
                        headers=headers,
                    )
                )
                if answer.status_code not in (200, 201):
                    raise _refused(f"the journal's create of a {kind}", answer)
                existing = _created_id(answer, kind)
                self.report.added[kind] += answer.status_code == 201
            self.ids[record["key"]] = f"{kind}/{existing}"
            self.report.held[kind] += 1

    def blocks_seen(self) -> None:
        """Wait until the journal keeps the blocked practitioners out (consent's event
        projected): from then on every persona answers as the demo describes."""
        deadline = time.monotonic() + PROJECTION_SECONDS
        for block in self.demo.data["blocks"]:
            persona = next(
                p["persona"]
                for p in self.demo.data["practitioners"]
                if p["hpr_number"] == block["practitioner"]
            )
            while True:
                answer = self.http.get(
                    f"{self.fhir}/Patient/{block['patient']}/$summary",
                    headers=_bearer(self.token(persona)),
                )
                if answer.status_code == 200 and not answer.json().get("entry"):
                    break
                if time.monotonic() > deadline:
                    raise _refused("the blocked practitioner's summary (still not blocked)", answer)
                time.sleep(0.2)


def _created_id(answer: httpx.Response, kind: str) -> str:
    """The id from a create's Location (``<base>/<type>/<id>[/_history/<v>]``), or from the
    resource a conditional create found."""
    location = answer.headers.get("location")
    if location:
        path: str = location.split("/_history/")[0].rstrip("/")
        return path.rsplit(f"{kind}/", 1)[1]
    return str(answer.json()["id"])


def load(endpoints: Json, demo: Demo | None = None) -> Report:
    """Load the demo into the platform ``endpoints`` describes; idempotent."""
    started = time.monotonic()
    with httpx.Client(timeout=30.0) as http:
        loader = Loader(endpoints, demo or Demo.read(), http)
        loader.master_data()
        loader.blocks()
        loader.apps()
        loader.records()
        loader.blocks_seen()
    loader.report.seconds = time.monotonic() - started
    return loader.report


# -- what to try ---------------------------------------------------------------------------


def try_commands(endpoints: Json, run_dir: Path) -> list[tuple[str, str]]:
    """(what it shows, a shell command that shows it, as it stands) for the first minutes."""
    demo = Demo.read()
    patient = demo.persona("citizen")["national_id"]
    fhir = str(endpoints["fhir"]["base"])
    audit = str(endpoints["services"]["audit"]["app"])
    # the commands name the run folder when it is not the default one
    prefix = "" if run_dir == ROOT / ".run" else f"AKSON_RUN_DIR={shlex.quote(str(run_dir))} "

    def token(persona: str, audience: str | None = None) -> str:
        aud = f" AUD={audience}" if audience else ""
        return f'-H "Authorization: Bearer $({prefix}make -s token AS={persona}{aud})"'

    shown = (
        "'.entry[].resource | \"\\(.resourceType): \\(.description // .code.coding[0].display"
        " // .medicationCodeableConcept.coding[0].display)\"'"
    )
    commands = [
        (
            "the GP reads Astrid's summary (200): allergies, medications, latest notes and results",
            f"curl -s {token('gp')} '{fhir}/Patient/{patient}/$summary' | jq -r {shown}",
        ),
        (
            "a GP without a care relation is refused Astrid's record (403)",
            f"curl -s -o /dev/null -w '%{{http_code}}\\n' {token('stranger')}"
            f" '{fhir}/Patient/{patient}'",
        ),
        (
            "Astrid reads who has accessed her record (audit's access log)",
            f"curl -s {token('citizen', 'audit')} '{audit}/audit/access-log'"
            " | jq -r '.items[] | \"\\(.at)  \\(.name // .actor)  \\(.action)"
            " \\(.resource_type)\"'",
        ),
    ]
    if "console" in endpoints["services"]:
        console = endpoints["services"]["console"]["app"]
        commands.append(
            (
                "the console in a browser: log in as Astrid (citizen, national id "
                f"{patient}) or the log auditor (personnel, HPR 9700006)",
                f"xdg-open {console}/",
            )
        )
    return commands


def show(endpoints: Json, run_dir: Path, report: Report | None = None) -> str:
    lines = [report.line()] if report else []
    lines.append("try (personas: make token AS=<persona>; see README.md, 'Try it'):")
    for what, command in try_commands(endpoints, run_dir):
        lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines)


def after_up(endpoints: Json, run_dir: Path) -> str:
    """What `make up` prints last: the demo loaded (timed) and what to try with it."""
    try:
        report = load(endpoints)
    except (SystemExit, AssertionError, httpx.HTTPError) as error:
        raise SystemExit(
            f"the platform is up, but the demo data did not load ({error}); "
            "`make demo` loads it again, `make down` stops the platform"
        ) from None
    return show(endpoints, run_dir, report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["load", "token", "try"])
    parser.add_argument("persona", nargs="?", help="token: whose (see `make token`)")
    parser.add_argument("--audience", default=GATEWAY, help="token: for which service")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    args = parser.parse_args()
    run_dir: Path = args.run_dir.resolve()
    if not (run_dir / "endpoints.json").exists():
        raise SystemExit(f"nothing runs in {run_dir}: start the platform with `make up`")
    endpoints = json.loads((run_dir / "endpoints.json").read_text())
    if args.command == "token":
        personas = Demo.read().personas()
        if args.persona not in personas:
            listing = "\n".join(f"  {name:<9} {about}" for name, about in personas.items())
            raise SystemExit(f"make token AS=<persona> [AUD=<audience>], personas:\n{listing}")
        try:
            print(persona_token(endpoints, args.persona, args.audience))  # noqa: T201
        except AssertionError as error:
            raise SystemExit(
                f"no token for {args.persona} ({error}); is the demo loaded? "
                "`make up` loads it unless AKSON_DEMO=0, `make demo` loads it now"
            ) from None
        return
    report = load(endpoints) if args.command == "load" else None
    print(show(endpoints, run_dir, report))  # noqa: T201


if __name__ == "__main__":
    main()
