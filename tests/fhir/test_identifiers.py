"""Tests for akson.fhir.identifiers: person numbers (incl. the 2032 K1 rule), HPR, HER-id, orgnr."""

from __future__ import annotations

import datetime
import importlib.util
import random
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

if importlib.util.find_spec("akson") is None:  # src layout, package not installed into .venv
    sys.path.insert(0, str(Path(__file__).parents[2] / "src"))

from akson.fhir.identifiers import (  # noqa: E402
    PersonId,
    PersonIdKind,
    classify_person_id,
    duf_is_valid,
    fhn_is_valid,
    fnr_is_valid,
    her_id_is_valid,
    hpr_is_valid,
    make_fhn,
    make_fnr,
    make_orgnr,
    orgnr_is_valid,
    validate_person_id,
)

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


# =============================================================== classification (PersonId)

FNR, DNR, HNR, FHN, DUF = (PersonIdKind[k] for k in ("FNR", "DNR", "HNR", "FHN", "DUF"))
D = datetime.date

# The individnummer → century table of DOMAIN.md §1, written as (first year, last year, range).
CENTURY_TABLE = ((1854, 1899, range(500, 750)), (1900, 1999, range(0, 500)),
                 (1940, 1999, range(900, 1000)), (2000, 2039, range(500, 1000)))


def reference_birth_year(individ: int, yy: int) -> int | None:
    years = {first - first % 100 + yy for first, last, r in CENTURY_TABLE
             if individ in r and first <= first - first % 100 + yy <= last}
    assert len(years) <= 1, (individ, yy)  # the table never gives two centuries
    return years.pop() if years else None


def reference_classify(value: str) -> tuple[PersonIdKind, str | None] | None:
    """NAV fnrvalidator's getType (digit 1 ≥ 4: D; digit 3 ≥ 8: tnr; ≥ 4: hnr) + FHN + DUF."""
    if len(value) == 12 and value.isdigit():
        return DUF, None
    if not reference_valid(value) and not (value[:1] in ("8", "9") and reference_fhn(value)):
        return None
    if value[0] in "89":
        return FHN, None
    synthetic = "tenor" if int(value[2]) >= 8 else "nav" if int(value[2]) >= 4 else None
    kind = DNR if int(value[0]) >= 4 else HNR if synthetic == "nav" else FNR
    return kind, synthetic


def reference_fhn(value: str) -> bool:
    return (len(value) == 11 and value.isdigit() and value[0] in "89"
            and classic_k1(value[:9]) == int(value[9]) and k2_of(value[:10]) == int(value[10]))


@pytest.mark.parametrize(
    ("value", "kind", "synthetic", "rule_2032", "born", "why"),
    [
        ("02013299997", FNR, None, False, D(2032, 1, 2),
         "Skatteetaten's 2032 example: its K1 is the classic one (remainder 0), individnummer 999 "
         "with yy 32 reads as 2032 under the old table"),
        ("30108299920", FNR, None, False, D(1982, 10, 30), "Skatteetaten: person 1, issued 2032"),
        ("30108299939", FNR, None, True, None, "Skatteetaten: person 2, K1 by remainder 1"),
        ("01019012308", FNR, None, True, None, "K1 only valid by the 2032 rule"),
        ("15078543296", FNR, None, False, D(1985, 7, 15), "classic, 1900s (individnummer 432)"),
        ("13527248013", HNR, "nav", False, D(1972, 12, 13), "NAV README hnr: month + 40"),
        ("68467038838", DNR, "nav", False, D(1970, 6, 28), "NAV README dnr-and-hnr"),
        ("10915596784", FNR, "tenor", False, D(1955, 11, 10), "NAV README tnr: month + 80, 9xx"),
        ("41912412383", DNR, "tenor", False, D(1924, 11, 1), "D-nummer day + 40 and month + 80"),
        ("01912412306", FNR, "tenor", True, None, "Tenor form with a 2032-rule K1"),
        ("29020012380", FNR, None, False, None,
         "29.02.00 with individnummer 123 reads as 1900, not a leap year: no birth date (only a "
         "2032 issue can carry it), yet the number itself is valid"),
    ],
)
def test_classify_examples(value: str, kind: PersonIdKind, synthetic: str | None,
                           rule_2032: bool, born: datetime.date | None, why: str) -> None:
    assert classify_person_id(value) == PersonId(kind, synthetic, rule_2032, born), why  # type: ignore[arg-type]
    assert reference_classify(value) == (kind, synthetic), why


def test_tenor_month_plus_80_example() -> None:
    """DOMAIN.md §1: born 01.11.2024 → 019124…, check digits computed after the +80."""
    number = make_fnr(D(2024, 11, 1), 512, synthetic="tenor")
    assert number is not None and number.startswith("019124512")
    assert reference_valid(number)
    assert classify_person_id(number) == PersonId(FNR, "tenor", False, D(2024, 11, 1))


def test_d_number_day_plus_40() -> None:
    number = make_fnr(D(1990, 5, 17), 123, d_number=True)
    assert number is not None and number.startswith("570590123")
    assert classify_person_id(number) == PersonId(DNR, None, False, D(1990, 5, 17))
    assert validate_person_id(number, allow_synthetic=False) == []


def test_month_plus_40_is_hnr_whether_local_or_nav() -> None:
    """H-nummer (local) and NAV Dolly share the form; NAV's validator calls both `hnr`."""
    number = make_fnr(D(1990, 5, 17), 123, synthetic="nav")
    assert number is not None and number.startswith("174590123")
    assert classify_person_id(number) == PersonId(HNR, "nav", False, D(1990, 5, 17))
    assert validate_person_id(number, allow_synthetic=True) == []
    assert validate_person_id(number, allow_synthetic=False) != []


@pytest.mark.parametrize("value", ["99999999999", "80000000000", "8000000000", "800000000000"])
def test_fhn_edge_values(value: str) -> None:
    assert fhn_is_valid(value) == reference_fhn(value)


def test_fhn_first_digit_8_or_9() -> None:
    rng = random.Random(2032)
    numbers = [make_fhn(rng) for _ in range(200)]
    assert {n[0] for n in numbers} == {"8", "9"}
    for n in numbers:
        assert reference_fhn(n) and fhn_is_valid(n)
        assert classify_person_id(n) == PersonId(FHN)
        assert not fnr_is_valid(n)  # day ≥ 80: never a fødselsnummer / D-nummer
        assert validate_person_id(n, allow_synthetic=False) == []
    # Same digits after a first digit of 0..7 are no FHN (and the check digits move with it).
    for n in numbers[:20]:
        for first in "01234567":
            assert not fhn_is_valid(first + n[1:])


def test_fhn_uses_the_classic_k1_only() -> None:
    first9 = "812345678"
    k1s = sorted(k1_candidates(first9) - {classic_k1(first9)})
    assert k1s
    for k1 in k1s:
        other = with_check_digits(first9, k1)
        if other:
            assert not fhn_is_valid(other)
            assert classify_person_id(other) is None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("02013299998", "wrong K2"),
        ("02013299987", "wrong K1"),
        ("0201329999", "10 digits"),
        ("0201329999x", "a letter"),
        ("02013299997 ", "trailing space"),
        ("０２０１３２９９９９７", "full-width digits"),
        ("1234567890123", "13 digits"),
        ("", "empty"),
        ("29029912345", "29 February 99"),
        ("93915000869", "FHN with a wrong K2"),
        ("12345678901", "the usual fake"),
        ("00000000000", "zeros"),
    ],
)
def test_classify_rejects(value: str, why: str) -> None:
    assert classify_person_id(value) is None, why
    reasons = validate_person_id(value, allow_synthetic=True)
    assert reasons, why
    if value.strip():
        assert all(value not in r and value.strip()[:6] not in r for r in reasons)


@pytest.mark.parametrize("value", [None, 2013299997, b"02013299997", ["02013299997"]])
def test_classify_non_strings(value: object) -> None:
    assert classify_person_id(value) is None  # type: ignore[arg-type]
    assert validate_person_id(value, allow_synthetic=True)  # type: ignore[arg-type]


def test_duf_is_twelve_digits() -> None:
    assert duf_is_valid("201500123456")
    assert classify_person_id("201500123456") == PersonId(DUF)
    for bad in ("20150012345", "2015001234567", "20150012345x", "２０１５００１２３４５６", ""):
        assert not duf_is_valid(bad)
    assert validate_person_id("201500123456", allow_synthetic=False) == []


def test_person_id_is_frozen_and_repr_hides_birth_date() -> None:
    person = classify_person_id("15078543296")
    assert person is not None and person.birth_date == D(1985, 7, 15)
    assert "1985" not in repr(person) and "birth" not in repr(person)
    with pytest.raises(AttributeError):
        person.kind = DNR  # type: ignore[misc]


# ------------------------------------------------------------------- centuries and leap years


@pytest.mark.parametrize(
    ("born", "individ"),
    [
        (D(1854, 1, 1), 500), (D(1899, 12, 31), 749), (D(1900, 1, 1), 0), (D(1939, 6, 1), 499),
        (D(1940, 1, 1), 900), (D(1999, 12, 31), 999), (D(1999, 12, 31), 0), (D(2000, 1, 1), 500),
        (D(2000, 2, 29), 999), (D(2039, 12, 31), 999), (D(1996, 2, 29), 250),
        (D(2004, 2, 29), 501), (D(1888, 2, 29), 600),
    ],
)
def test_centuries_from_individnummer(born: datetime.date, individ: int) -> None:
    # Some individnumre give a check digit of 10: take the nearest one in the same range.
    number = next(
        n
        for candidate in sorted(range(1000), key=lambda c: abs(c - individ))
        if reference_birth_year(candidate, born.year % 100) == born.year
        and (n := make_fnr(born, candidate))
    )
    person = classify_person_id(number)
    assert person == PersonId(FNR, None, False, born)


@pytest.mark.parametrize(
    ("born", "individ", "why"),
    [
        (D(2000, 1, 1), 499, "499 with yy 00 is 1900"),
        (D(1900, 1, 1), 500, "500 with yy 00 is 2000"),
        (D(1945, 1, 1), 500, "500–749 with yy 40–53 is not assigned"),
        (D(1960, 1, 1), 800, "750–899 with yy ≥ 40 is not assigned"),
        (D(1939, 1, 1), 950, "900–999 with yy ≤ 39 is 2039"),
        (D(2040, 1, 1), 999, "the old table ends in 2039"),
        (D(1853, 12, 31), 600, "the old table starts in 1854"),
    ],
)
def test_make_fnr_refuses_individnummer_of_another_century(
    born: datetime.date, individ: int, why: str
) -> None:
    with pytest.raises(ValueError):
        make_fnr(born, individ)
    # The 2032 rule carries no century: any individnummer goes.
    for rest in (1, 2, 3):
        number = make_fnr(born, individ, k1_rest=rest)
        if number:
            assert classify_person_id(number) == PersonId(FNR, None, True, None)


def test_29_february() -> None:
    leap = make_fnr(D(2000, 2, 29), 500)
    assert leap and classify_person_id(leap) == PersonId(FNR, None, False, D(2000, 2, 29))
    # 1900 was no leap year: 29.02.00 with a 1900s individnummer has no old-rule birth date.
    first9 = "290200123"
    number = with_check_digits(first9, classic_k1(first9))  # type: ignore[arg-type]
    assert number is not None and fnr_is_valid(number)
    assert classify_person_id(number) == PersonId(FNR, None, False, None)
    # 29 February in a yy not divisible by 4 is never a date.
    for yy in ("01", "99", "38", "70"):
        for individ in ("123", "567", "999"):
            for k1 in k1_candidates(f"2902{yy}{individ}"):
                candidate = with_check_digits(f"2902{yy}{individ}", k1)
                if candidate:
                    assert classify_person_id(candidate) is None
                    reasons = validate_person_id(candidate, allow_synthetic=True)
                    assert reasons and "birth date" in reasons[0]


def test_make_fnr_returns_none_for_check_digit_10() -> None:
    nones = [i for i in range(0, 500) if make_fnr(D(1985, 7, 15), i) is None]
    assert nones  # roughly 2 in 11 individnumre are unusable on a given day
    for i in nones:
        first9 = f"150785{i:03d}"
        k1 = classic_k1(first9)
        assert k1 is None or k2_of(first9 + str(k1)) is None


def test_make_fnr_argument_errors() -> None:
    with pytest.raises(ValueError):
        make_fnr(D(1985, 7, 15), 123, synthetic="dolly")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make_fnr(D(1985, 7, 15), 1000)
    with pytest.raises(ValueError):
        make_fnr(D(1985, 7, 15), -1)
    with pytest.raises(ValueError):
        make_fnr(D(1985, 7, 15), 123, k1_rest=4)


# ---------------------------------------------------------------- production vs test mode


def test_validate_person_id_reasons() -> None:
    tenor = "01912412306"
    assert validate_person_id(tenor, allow_synthetic=True) == []
    reasons = validate_person_id(tenor, allow_synthetic=False)
    assert len(reasons) == 1 and "synthetic" in reasons[0]
    assert validate_person_id("15078543296", allow_synthetic=False) == []
    assert "check digits" in validate_person_id("15078543297", allow_synthetic=False)[0]
    assert "11 digits" in validate_person_id("1507854329", allow_synthetic=False)[0]
    assert "felles hjelpenummer" in validate_person_id("93915000869", allow_synthetic=False)[0]


# ----------------------------------------------------------------------------- properties


@st.composite
def generated_numbers(draw: st.DrawFn) -> tuple[str, dict]:
    """A number from make_fnr and what it was generated from."""
    k1_rest = draw(st.sampled_from((0, 0, 1, 2, 3)))
    if k1_rest == 0:
        first, last, individs = draw(st.sampled_from(CENTURY_TABLE))
        individ = draw(st.sampled_from(individs))
    else:  # 2032 rule: any birth date the form can carry, any individnummer
        first, last, individ = 1854, 2099, draw(st.integers(0, 999))
    born = draw(st.dates(D(first, 1, 1), D(last, 12, 31)))
    synthetic = draw(st.sampled_from((None, "tenor", "nav")))
    d_number = draw(st.booleans())
    number = make_fnr(born, individ, synthetic=synthetic, d_number=d_number, k1_rest=k1_rest)
    assume(number is not None)
    assert number is not None
    return number, {"born": born, "individ": individ, "synthetic": synthetic,
                    "d_number": d_number, "k1_rest": k1_rest}


@given(generated_numbers())
def test_generated_numbers_validate_and_classify_as_generated(case: tuple[str, dict]) -> None:
    number, how = case
    assert reference_valid(number) and fnr_is_valid(number)
    assert number[6:9] == f"{how['individ']:03d}"
    kind = DNR if how["d_number"] else HNR if how["synthetic"] == "nav" else FNR
    rule_2032 = how["k1_rest"] != 0
    assert classify_person_id(number) == PersonId(
        kind, how["synthetic"], rule_2032, None if rule_2032 else how["born"]
    )
    assert reference_classify(number) == (kind, how["synthetic"])
    assert (classic_k1(number[:9]) == int(number[9])) is not rule_2032
    production = validate_person_id(number, allow_synthetic=False)
    assert (production == []) == (how["synthetic"] is None)
    assert validate_person_id(number, allow_synthetic=True) == []
    assert all(number not in r and number[:6] not in r for r in production)


@given(st.randoms(use_true_random=False))
def test_generated_fhn_and_orgnr(rng: random.Random) -> None:
    fhn = make_fhn(rng)
    assert reference_fhn(fhn) and classify_person_id(fhn) == PersonId(FHN)
    orgnr = make_orgnr(rng)
    assert orgnr_is_valid(orgnr) and orgnr[0] in "89"
    assert orgnr_check(orgnr[:8]) == int(orgnr[8])


def mutate(number: str, position: int, delta: int) -> str:
    return number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1:]


@given(generated_numbers(), st.integers(0, 10), st.integers(1, 9))
def test_single_digit_changes_are_never_valid(
    case: tuple[str, dict], position: int, delta: int
) -> None:
    """The brief allowed "invalid, or still valid but flagged 2032": the second never happens.

    K2 weighs d1..K1 by 5,4,3,2,7,6,5,4,3,2 — none ≡ 0 (mod 11) — and a digit changes by 1..9,
    also never ≡ 0, and 11 is prime: any single-digit change breaks K2 for every kind.
    """
    mutated = mutate(case[0], position, delta)
    assert classify_person_id(mutated) is None
    assert not fnr_is_valid(mutated) and not fhn_is_valid(mutated)


@given(st.randoms(use_true_random=False), st.integers(0, 10), st.integers(1, 9))
def test_single_digit_changes_break_fhn(rng: random.Random, position: int, delta: int) -> None:
    mutated = mutate(make_fhn(rng), position, delta)
    assert classify_person_id(mutated) is None


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_classify_agrees_with_reference(value: str) -> None:
    person = classify_person_id(value)
    expected = reference_classify(value)
    assert (person.kind, person.synthetic) == expected if person else expected is None
    if person and person.kind is not FHN:
        assert person.issued_2032_rule == (classic_k1(value[:9]) != int(value[9]))
        if person.birth_date:
            assert not person.issued_2032_rule
            assert person.birth_date.strftime("%d%m%y") == (
                f"{int(value[:2]) % 40:02d}{int(value[2:4]) % 40:02d}{value[4:6]}"
            )
            assert reference_birth_year(int(value[6:9]), int(value[4:6])) == (
                person.birth_date.year
            )


# ------------------------------------------------------------------------- HPR-nr, HER-id


@pytest.mark.parametrize("check", [hpr_is_valid, her_id_is_valid])
@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("9144900", True), ("1", True), ("122612", True), ("999999999", True),
        ("0", False), ("09144900", False), ("1000000000", False), ("", False),
        ("-1", False), ("+1", False), ("1.0", False), (" 1", False), ("1e3", False),
        ("９１４４９００", False), ("٣", False),
    ],
)
def test_hpr_and_her_id(check, value: str, ok: bool) -> None:  # type: ignore[no-untyped-def]
    assert check(value) is ok


@pytest.mark.parametrize("check", [hpr_is_valid, her_id_is_valid])
@pytest.mark.parametrize("value", [None, 9144900, b"9144900"])
def test_hpr_and_her_id_non_strings(check, value: object) -> None:  # type: ignore[no-untyped-def]
    assert check(value) is False


@given(st.integers(1, 999_999_999))
def test_hpr_and_her_id_accept_positive_numbers(n: int) -> None:
    assert hpr_is_valid(str(n)) and her_id_is_valid(str(n))
    assert not hpr_is_valid("0" + str(n)) and not her_id_is_valid("0" + str(n))
