"""Tests for akson.fhir.identifiers: fødselsnummer / D-nummer (incl. the 2032 K1 rule) and orgnr."""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

if importlib.util.find_spec("akson") is None:  # src layout, package not installed into .venv
    sys.path.insert(0, str(Path(__file__).parents[2] / "src"))

from akson.fhir.identifiers import fnr_is_valid, orgnr_is_valid  # noqa: E402

K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


# ----------------------------------------------------------------- reference implementation
# Written literally from DOMAIN.md §1 and kept deliberately different in shape from the module
# (sets of candidate digits, datetime for dates) so the two can be compared.


def k1_candidates(first9: str) -> set[int]:
    """Valid K1 digits: {11,12,13,14} − (sum mod 11), >10 → −11, 10 discarded."""
    r = sum(w * int(x) for w, x in zip(K1_WEIGHTS, first9, strict=True)) % 11
    out = set()
    for c in (11, 12, 13, 14):
        k = c - r
        if k > 10:
            k -= 11
        if k != 10:
            out.add(k)
    return out


def classic_k1(first9: str) -> int | None:
    k = 11 - sum(w * int(x) for w, x in zip(K1_WEIGHTS, first9, strict=True)) % 11
    return 0 if k == 11 else None if k == 10 else k


def k2_of(first10: str) -> int | None:
    k = 11 - sum(w * int(x) for w, x in zip(K2_WEIGHTS, first10, strict=True)) % 11
    return 0 if k == 11 else None if k == 10 else k


def date_form_ok(ddmmyy: str) -> bool:
    day, month, yy = int(ddmmyy[:2]), int(ddmmyy[2:4]), int(ddmmyy[4:])
    day = day - 40 if day > 40 else day
    month = month - 80 if month > 80 else month - 40 if month > 40 else month
    for century in (1900, 2000):
        try:
            datetime.date(century + yy, month, day)
            return True
        except ValueError:
            pass
    return False


def reference_valid(value: str) -> bool:
    if len(value) != 11 or not all(ch in "0123456789" for ch in value):
        return False
    return (
        date_form_ok(value[:6])
        and int(value[9]) in k1_candidates(value[:9])
        and k2_of(value[:10]) == int(value[10])
    )


def with_check_digits(first9: str, k1: int) -> str | None:
    k2 = k2_of(first9 + str(k1))
    return None if k2 is None else f"{first9}{k1}{k2}"


# ----------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("02013299997", "Skatteetaten's 2032 example (DOMAIN.md §1)"),
        ("15078543296", "classic K1 (c = 11)"),
        ("01019012308", "K1 only valid by the 2032 rule (c = 12; c = 11 gives 10)"),
        ("01019012316", "2032 rule, c = 13"),
        ("01019012324", "2032 rule, c = 14"),
        ("41912412383", "D-nummer (day + 40) that is also synthetic (month + 80)"),
        ("01912412306", "Skatteetaten/Tenor synthetic: 01.11.24 → 019124 (month + 80)"),
        ("31129912319", "31 December"),
        ("29020012380", "29 February in a year divisible by 4 (yy = 00)"),
    ],
)
def test_valid_numbers(value: str, why: str) -> None:
    assert reference_valid(value), why
    assert fnr_is_valid(value), why


def test_new_rule_number_is_not_valid_by_classic_rule() -> None:
    assert classic_k1("010190123") is None  # 11 − r = 10 → no classic K1 exists
    assert fnr_is_valid("01019012308")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("02013299998", "wrong K2"),
        ("02013299987", "wrong K1"),
        ("0201329999", "10 digits"),
        ("020132999970", "12 digits"),
        ("0201329999x", "not digits"),
        ("０２０１３２９９９９７", "full-width digits are not ASCII digits"),
        (" 2013299997", "space"),
        ("", "empty"),
        ("32019012345", "day 32"),
        ("00019012345", "day 00"),
        ("01139012345", "month 13"),
        ("01009012345", "month 00"),
        ("01539012345", "month 53 (neither +40 nor +80 form)"),
        ("30029912345", "30 February"),
        ("29029912345", "29 February, yy = 99"),
    ],
)
def test_invalid_numbers(value: str, why: str) -> None:
    assert not fnr_is_valid(value), why


def test_bad_dates_fail_even_with_correct_check_digits() -> None:
    for first9 in ("320190123", "011390123", "300299123", "015390123", "720190123"):
        for k1 in k1_candidates(first9):
            candidate = with_check_digits(first9, k1)
            if candidate:
                assert not fnr_is_valid(candidate), candidate


@pytest.mark.parametrize("value", [None, 2013299997, b"02013299997", ["02013299997"]])
def test_non_strings_are_invalid(value: object) -> None:
    assert not fnr_is_valid(value)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- properties


@st.composite
def valid_numbers(draw: st.DrawFn) -> str:
    """A random valid number: real/D-nummer/synthetic date form, any K1 the 2032 rule allows."""
    yy = draw(st.integers(0, 99))
    month = draw(st.integers(1, 12))
    max_day = (
        29
        if month == 2 and yy % 4 == 0
        else (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    )
    day = draw(st.integers(1, max_day))
    day += draw(st.sampled_from((0, 40)))  # D-nummer
    month += draw(st.sampled_from((0, 40, 80)))  # synthetic forms
    individ = draw(st.integers(0, 999))
    first9 = f"{day:02d}{month:02d}{yy:02d}{individ:03d}"
    k1 = draw(st.sampled_from(sorted(k1_candidates(first9))))
    number = with_check_digits(first9, k1)
    assume(number is not None)
    assert number is not None
    return number


@given(valid_numbers())
def test_generated_valid_numbers_are_accepted(number: str) -> None:
    assert fnr_is_valid(number)


@given(valid_numbers(), st.integers(0, 10), st.integers(1, 9))
def test_one_digit_mutations_are_rejected(number: str, position: int, delta: int) -> None:
    mutated = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    # K2 weighs every earlier digit (K1 included) by 2..7 and 11 is prime, so any single-digit
    # change moves the K2 sum off 0 mod 11: the 2032 K1 freedom can never rescue a typo.
    assert not reference_valid(mutated)
    assert not fnr_is_valid(mutated)


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_agrees_with_reference_on_random_digit_strings(value: str) -> None:
    assert fnr_is_valid(value) == reference_valid(value)


# --------------------------------------------------------------------------------- orgnr


def orgnr_check(first8: str) -> int | None:
    k = 11 - sum(w * int(x) for w, x in zip((3, 2, 7, 6, 5, 4, 3, 2), first8, strict=True)) % 11
    return 0 if k == 11 else None if k == 10 else k


@pytest.mark.parametrize("value", ["974760673", "923609016", "111111111"])
def test_valid_orgnr(value: str) -> None:
    assert orgnr_is_valid(value)


@pytest.mark.parametrize(
    "value", ["974760674", "97476067", "9747606730", "97476067x", "", "９７４７６０６７３"]
)
def test_invalid_orgnr(value: str) -> None:
    assert not orgnr_is_valid(value)


def test_orgnr_check_10_is_invalid() -> None:
    first8 = next(f"{n:08d}" for n in range(10**7, 10**8) if orgnr_check(f"{n:08d}") is None)
    assert not any(orgnr_is_valid(first8 + str(d)) for d in range(10))


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_orgnr_agrees_with_reference(value: str) -> None:
    assert orgnr_is_valid(value) == (orgnr_check(value[:8]) == int(value[8]))
