"""A deterministic synthetic population: municipalities, units, practitioners, persons and
care relations, written as NDJSON files the bulk import API takes.

Only synthetic national ids (month + 80) are used: they can never belong to a real person.
Organisation numbers are valid mod-11 numbers in a range starting with 1 (real ones start with
8 or 9); HPR numbers and HER-ids are serials from 80 000 000 up. Same seed, same files.

    python -m masterdata.seed OUT_DIR [--persons N]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from akson_common.identifiers import organisation_number_valid, synthetic_national_id

SEED = 20261121
MUNICIPALITIES = {"4601": "Bergen", "1103": "Stavanger", "4204": "Kristiansand", "1804": "Bodø"}
# units per municipality, by service type
UNITS = {
    "gp_office": 6,
    "emergency_clinic": 1,
    "nursing_home": 2,
    "home_care": 1,
    "health_station": 1,
    "physiotherapy": 1,
    "public_dental": 1,
}
# practitioners per unit of each type, by profession
STAFF = {
    "gp_office": {"LE": 4, "SP": 1, "HF": 1},
    "emergency_clinic": {"LE": 4, "SP": 4, "AA": 2},
    "nursing_home": {"SP": 6, "HF": 8, "LE": 1, "VP": 1},
    "home_care": {"SP": 6, "HF": 6, "ET": 1, "VP": 1},
    "health_station": {"JM": 2, "SP": 2, "PS": 1},
    "physiotherapy": {"FT": 4},
    "public_dental": {"TL": 2, "TH": 1},
}
GIVEN = (
    "Ola Kari Nora Jakob Emma Filip Ingrid Lukas Sara Aksel Maja Henrik Sofie Magnus Ella Oskar"
    " Amalie Noah Tiril Even"
).split()
FAMILY = (
    "Hansen Johansen Olsen Larsen Andersen Pedersen Nilsen Kristiansen Jensen Karlsen Johnsen"
    " Pettersen Eriksen Berg Haugen Hagen Johannessen Andreassen Jacobsen Dahl"
).split()
STREETS = ["Storgata", "Kirkeveien", "Skolegata", "Fjordveien", "Bakkegata", "Sjøgata"]
POSTAL = {"4601": "5003", "1103": "4006", "4204": "4610", "1804": "8006"}
TODAY = date(2026, 11, 1)


@dataclass
class Population:
    organisations: list[dict[str, Any]] = field(default_factory=list)
    practitioners: list[dict[str, Any]] = field(default_factory=list)
    persons: list[dict[str, Any]] = field(default_factory=list)
    care_relations: list[dict[str, Any]] = field(default_factory=list)

    def files(self) -> dict[str, list[dict[str, Any]]]:
        """By import kind, in the order they must be loaded."""
        return {
            "organisations": self.organisations,
            "practitioners": self.practitioners,
            "persons": self.persons,
            "care-relations": self.care_relations,
        }


def organisation_numbers(start: int = 10_000_000) -> Iterator[str]:
    for first_eight in range(start, start + 10_000_000):
        for control in range(10):
            number = f"{first_eight}{control}"
            if organisation_number_valid(number):
                yield number
                break


def generate(persons: int = 10_000, seed: int = SEED) -> Population:
    rng = random.Random(seed)
    population = Population()
    org_numbers = organisation_numbers()
    serials = iter(range(80_000_000, 90_000_000))
    units: dict[str, dict[str, list[str]]] = {}
    gps: dict[str, list[tuple[str, str]]] = {}
    for municipality, name in MUNICIPALITIES.items():
        owner = next(org_numbers)
        population.organisations.append(
            {
                "org_number": owner,
                "name": f"{name} kommune",
                "municipality": municipality,
                "her_id": str(next(serials)),
                "on_platform": True,
            }  # fmt: skip
        )
        units[municipality] = {}
        gps[municipality] = []
        for service_type, count in UNITS.items():
            for n in range(1, count + 1):
                unit = next(org_numbers)
                units[municipality].setdefault(service_type, []).append(unit)
                population.organisations.append(
                    {
                        "org_number": unit,
                        "name": f"{name} {service_type} {n}",
                        "municipality": municipality,
                        "parent": owner,
                        "service_type": service_type,
                        "her_id": str(next(serials)),
                        "on_platform": True,
                    }  # fmt: skip
                )
                for profession, staff in STAFF[service_type].items():
                    for _ in range(staff):
                        hpr = str(next(serials))
                        population.practitioners.append(_practitioner(rng, hpr, profession, unit))
                        if service_type == "gp_office" and profession == "LE":
                            gps[municipality].append((hpr, unit))
    used: set[str] = set()
    for n in range(persons):
        municipality = list(MUNICIPALITIES)[n % len(MUNICIPALITIES)]
        person = _person(rng, municipality, used)
        population.persons.append(person)
        population.care_relations.extend(
            _relations(rng, person, units[municipality], gps[municipality])
        )
    return population


def _practitioner(rng: random.Random, hpr: str, profession: str, unit: str) -> dict[str, Any]:
    since = TODAY - timedelta(days=rng.randint(200, 12_000))
    roll = rng.random()
    status = "suspended" if roll < 0.03 else "revoked" if roll < 0.04 else "active"
    status_from = since if status == "active" else TODAY - timedelta(days=rng.randint(1, 150))
    return {
        "hpr_number": hpr,
        "given_name": rng.choice(GIVEN),
        "family_name": rng.choice(FAMILY),
        "status": status,
        "status_from": status_from.isoformat(),
        "authorisations": [{"profession": profession, "valid_from": since.isoformat()}],
        "employments": [{"unit": unit, "period_start": since.isoformat()}],
    }


def _person(rng: random.Random, municipality: str, used: set[str]) -> dict[str, Any]:
    birth = date(1930, 1, 1) + timedelta(days=rng.randint(0, 34_000))
    sequence = 0
    while (national_id := synthetic_national_id(birth, sequence)) in used:
        sequence += 1
    used.add(national_id)
    roll = rng.random()
    protection = "strengt_fortrolig" if roll < 0.003 else "fortrolig" if roll < 0.013 else "none"
    person: dict[str, Any] = {
        "national_id": national_id,
        "given_name": rng.choice(GIVEN),
        "family_name": rng.choice(FAMILY),
        "birth_date": birth.isoformat(),
        "municipality": municipality,
        "address": {
            "line": f"{rng.choice(STREETS)} {rng.randint(1, 120)}",
            "postal_code": POSTAL[municipality],
            "city": MUNICIPALITIES[municipality],
        },
        "address_protection": protection,
    }
    if rng.random() < 0.02:
        death = birth + timedelta(days=rng.randint(20_000, 34_000))
        person["date_of_death"] = min(death, TODAY).isoformat()
    return person


def _relations(
    rng: random.Random,
    person: dict[str, Any],
    units: dict[str, list[str]],
    gps: list[tuple[str, str]],
) -> list[dict[str, Any]]:
    national_id = person["national_id"]
    start = max(date.fromisoformat(person["birth_date"]), date(2001, 6, 1))
    hpr, office = rng.choice(gps)
    relation: dict[str, Any] = {
        "relation_id": f"gp-{national_id}",
        "patient": national_id,
        "kind": "gp_list",
        "practitioner": hpr,
        "unit": office,
        "period_start": start.isoformat(),
    }
    if "date_of_death" in person:
        relation["period_end"] = max(date.fromisoformat(person["date_of_death"]), start).isoformat()
    relations = [relation]
    age = (TODAY - date.fromisoformat(person["birth_date"])).days // 365
    kind = "nursing_home" if age > 80 and rng.random() < 0.3 else None
    if kind is None and age > 70 and rng.random() < 0.15:
        kind = "home_care"
    if kind is not None and "date_of_death" not in person:
        relations.append(
            {
                "relation_id": f"{kind.replace('_', '-')}-{national_id}",
                "patient": national_id,
                "kind": kind,
                "unit": rng.choice(units[kind]),
                "period_start": (TODAY - timedelta(days=rng.randint(1, 2000))).isoformat(),
            }
        )
    return relations


def write(population: Population, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, records in population.files().items():
        path = folder / f"{kind}.ndjson"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        paths[kind] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--persons", type=int, default=10_000)
    args = parser.parse_args()
    for kind, path in write(generate(args.persons), args.folder).items():
        print(f"{kind:<16} {sum(1 for _ in path.open()):>6} lines  {path}")  # noqa: T201


if __name__ == "__main__":
    main()
