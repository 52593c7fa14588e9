"""Norwegian identifiers, validated in one place (a 2032 reform relaxes the control digits).

National identity numbers (fødselsnummer) and their variants: D-numbers (day + 40),
H-numbers (month + 40) and synthetic test numbers from the national test data service
(month + 80). Organisation numbers: mod-11 with weights 3 2 7 6 5 4 3 2.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator

_K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ORG = (3, 2, 7, 6, 5, 4, 3, 2)


class NationalIdKind(StrEnum):
    BIRTH_NUMBER = "fnr"
    D_NUMBER = "dnr"
    H_NUMBER = "hnr"
    SYNTHETIC = "synthetic"


def _control(digits: list[int], weights: tuple[int, ...]) -> int | None:
    remainder = 11 - sum(d * w for d, w in zip(digits, weights, strict=False)) % 11
    if remainder == 11:
        return 0
    return None if remainder == 10 else remainder


def national_id_control_digits(first_nine: str) -> str | None:
    """The two control digits for nine leading digits, or None if no valid number exists."""
    digits = [int(c) for c in first_nine]
    k1 = _control(digits, _K1)
    if k1 is None:
        return None
    k2 = _control([*digits, k1], _K2)
    return None if k2 is None else f"{k1}{k2}"


def national_id_kind(value: str) -> NationalIdKind:
    """Validate a national identity number and say which kind it is; raise ValueError if invalid."""
    if len(value) != 11 or not value.isascii() or not value.isdigit():
        raise ValueError("a national identity number has 11 digits")
    if national_id_control_digits(value[:9]) != value[9:]:
        raise ValueError("the control digits do not match")
    day, month = int(value[0:2]), int(value[2:4])
    kind = NationalIdKind.BIRTH_NUMBER
    if day > 40:
        kind, day = NationalIdKind.D_NUMBER, day - 40
    if month > 80:
        kind, month = NationalIdKind.SYNTHETIC, month - 80
    elif month > 40:
        kind, month = NationalIdKind.H_NUMBER, month - 40
    try:
        # Year 2000 is a leap year, so 29 February passes for any century here.
        date(2000, month, day)
    except ValueError:
        raise ValueError("the number does not encode a valid date") from None
    return kind


def is_national_id(value: str) -> bool:
    try:
        national_id_kind(value)
    except ValueError:
        return False
    return True


def organisation_number_valid(value: str) -> bool:
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return False
    return _control([int(c) for c in value[:8]], _ORG) == int(value[8])


def _serial_number(value: str, max_digits: int) -> bool:
    return 1 <= len(value) <= max_digits and value.isascii() and value.isdigit() and value[0] != "0"


def is_hpr_number(value: str) -> bool:
    """An HPR number: the health personnel register's serial number (no control digit)."""
    return _serial_number(value, 9)


def is_her_id(value: str) -> bool:
    """A HER-id: the address register's serial number of a communication party."""
    return _serial_number(value, 9)


def is_municipality_number(value: str) -> bool:
    """Four digits, the first two the county; which numbers exist is data (reforms change it)."""
    return len(value) == 4 and value.isascii() and value.isdigit() and value[:2] != "00"


def synthetic_national_id(birth: date, sequence: int) -> str:
    """The ``sequence``-th valid synthetic test number (month + 80) for a birth date.

    Synthetic numbers can never belong to a real person: use only these in seeds and tests.
    """
    # Individual numbers encode the century: 000-499 for 1900-1999, 500-999 from 2000.
    individuals = range(0, 500) if birth.year < 2000 else range(500, 1000)
    found = -1
    for individual in individuals:
        first_nine = f"{birth.day:02d}{birth.month + 80:02d}{birth.year % 100:02d}{individual:03d}"
        control = national_id_control_digits(first_nine)
        if control is None:
            continue
        found += 1
        if found == sequence:
            return first_nine + control
    raise ValueError("no more synthetic numbers for that birth date")


# -- the same rules as pydantic field types ----------------------------------------------------


def _checked(valid: Callable[[str], bool], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not valid(value):
            raise ValueError(f"not a valid {what}")
        return value

    return AfterValidator(check)


def _national_id(value: str) -> str:
    national_id_kind(value)  # says why a number is invalid
    return value


NationalId = Annotated[str, AfterValidator(_national_id)]
Municipality = Annotated[str, _checked(is_municipality_number, "municipality number")]
HprNumber = Annotated[str, _checked(is_hpr_number, "HPR number")]
HerId = Annotated[str, _checked(is_her_id, "HER-id")]
OrganisationNumber = Annotated[str, _checked(organisation_number_valid, "organisation number")]
