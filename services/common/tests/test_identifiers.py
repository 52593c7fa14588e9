from __future__ import annotations

from collections.abc import Callable
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from akson_common.identifiers import (
    NationalIdKind,
    is_her_id,
    is_hpr_number,
    is_municipality_number,
    is_national_id,
    national_id_control_digits,
    national_id_kind,
    organisation_number_valid,
    synthetic_national_id,
)

birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2039, 12, 31))


@given(birth_dates, st.integers(min_value=0, max_value=30))
def test_synthetic_numbers_are_valid_and_synthetic(birth: date, sequence: int) -> None:
    number = synthetic_national_id(birth, sequence)
    assert national_id_kind(number) is NationalIdKind.SYNTHETIC
    assert int(number[2:4]) - 80 == birth.month


@given(birth_dates, st.integers(0, 10), st.integers(0, 10), st.integers(1, 9))
def test_any_single_digit_change_is_detected(
    birth: date, seq: int, position: int, delta: int
) -> None:
    number = synthetic_national_id(birth, seq)
    changed = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    assert not is_national_id(changed)


@given(st.text(max_size=12))
def test_arbitrary_text_never_raises_anything_but_value_error(text: str) -> None:
    assert is_national_id(text) in (True, False)


def complete(date_part: str) -> str:
    """The first valid number for a six-digit date part (built here, never a real register)."""
    for individual in range(100, 500):
        control = national_id_control_digits(f"{date_part}{individual}")
        if control is not None:
            return f"{date_part}{individual}{control}"
    raise AssertionError("no valid number")


def test_birth_number_d_number_and_h_number_are_told_apart() -> None:
    assert national_id_kind(complete("010190")) is NationalIdKind.BIRTH_NUMBER
    assert national_id_kind(complete("410190")) is NationalIdKind.D_NUMBER
    assert national_id_kind(complete("014190")) is NationalIdKind.H_NUMBER
    assert national_id_kind(complete("018190")) is NationalIdKind.SYNTHETIC


def test_invalid_dates_and_shapes_are_refused() -> None:
    impossible = "320190" + "123"  # day 32
    control = national_id_control_digits(impossible)
    if control is not None:
        assert not is_national_id(impossible + control)
    assert not is_national_id("1234567890")
    assert not is_national_id("1234567890a")
    assert not is_national_id("١٢٣٤٥٦٧٨٩٠١")  # non-ASCII digits


@given(st.text(alphabet="0123456789", min_size=8, max_size=8))
def test_organisation_numbers_with_their_control_digit(first_eight: str) -> None:
    weights = (3, 2, 7, 6, 5, 4, 3, 2)
    remainder = 11 - sum(int(d) * w for d, w in zip(first_eight, weights, strict=True)) % 11
    if remainder == 10:
        assert not any(organisation_number_valid(first_eight + str(c)) for c in range(10))
        return
    control = 0 if remainder == 11 else remainder
    assert organisation_number_valid(first_eight + str(control))
    assert not organisation_number_valid(first_eight + str((control + 1) % 10))


def test_a_published_organisation_number() -> None:
    assert organisation_number_valid("974760673")  # Brønnøysundregistrene itself
    assert not organisation_number_valid("974760674")


serial_validators = st.sampled_from([is_hpr_number, is_her_id])


@given(serial_validators, st.integers(min_value=1, max_value=999_999_999))
def test_hpr_numbers_and_her_ids_are_positive_serials_up_to_nine_digits(
    valid: Callable[[str], bool], serial: int
) -> None:
    assert valid(str(serial))
    assert not valid(f"0{serial}")  # no leading zero: the same number written twice
    assert not valid(f"{serial:010d}")  # ten digits


@given(serial_validators, st.text(max_size=12))
def test_serials_are_ascii_digits_only(valid: Callable[[str], bool], text: str) -> None:
    expected = (
        1 <= len(text) <= 9 and text.isascii() and text.isdigit() and not text.startswith("0")
    )
    assert valid(text) is expected


@given(st.integers(min_value=100, max_value=9999))
def test_municipality_numbers_have_four_digits_and_a_county(number: int) -> None:
    text = f"{number:04d}"
    assert is_municipality_number(text)
    assert not is_municipality_number(text[:3])
    assert not is_municipality_number(text + "1")


@given(st.text(max_size=6))
def test_municipality_numbers_refuse_anything_else(text: str) -> None:
    expected = len(text) == 4 and text.isascii() and text.isdigit() and text[:2] != "00"
    assert is_municipality_number(text) is expected


def test_known_municipality_numbers() -> None:
    for number in ("0301", "4601", "1103", "4204", "1804"):
        assert is_municipality_number(number)
    assert not is_municipality_number("0001")
