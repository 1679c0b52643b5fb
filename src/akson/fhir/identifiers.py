"""Norwegian identifiers: person numbers (FNR, D-nr, H-nr, FHN, DUF), HPR-nr, HER-id and orgnr.

Rules are those of DOMAIN.md §1: Skatteetaten's fødselsnummer rules including the 2032 change
(https://skatteetaten.github.io/folkeregisteret-api-dokumentasjon/nytt-fodselsnummer-fra-2032/),
NAV's classification of the month+40/+80 forms (https://github.com/navikt/fnrvalidator), Norsk
Helsenett's felles hjelpenummer (https://nhn.no/hva-er-felles-hjelpenummer/) and
Brønnøysundregistrene's organisasjonsnummer rule. Pure functions, no I/O.

The values these functions see are personal data: never log or echo them. No function here reads
gender from a number (the 2032 numbers are gender-neutral and FREG is the source for gender), and
a birth date is only read where the old rules encode it (see `PersonId.birth_date`).

The OIDs / FHIR identifier systems are in `akson.fhir.naming`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Literal

__all__ = [
    "PersonId",
    "PersonIdKind",
    "Synthetic",
    "classify_person_id",
    "duf_is_valid",
    "fhn_is_valid",
    "fnr_is_valid",
    "her_id_is_valid",
    "hpr_is_valid",
    "make_fhn",
    "make_fnr",
    "make_orgnr",
    "orgnr_is_valid",
    "validate_person_id",
]

_ELEVEN_DIGITS = re.compile(r"[0-9]{11}")
_TWELVE_DIGITS = re.compile(r"[0-9]{12}")
_NINE_DIGITS = re.compile(r"[0-9]{9}")
# HPR-nr and HER-id: a positive decimal number in canonical form (no sign, no leading zero).
_POSITIVE_NUMBER = re.compile(r"[1-9][0-9]{0,8}")

_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)

# Days per month; February allows 29 because a number carries no reliable century (yy=00 may be
# 1900 or 2000) and the 2032 numbers carry none at all, so leap years are judged by yy alone.
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

#: Which month offset marks which kind of synthetic (test) number.
Synthetic = Literal["tenor", "nav"]
_MONTH_OFFSETS: dict[Synthetic | None, int] = {None: 0, "nav": 40, "tenor": 80}


class PersonIdKind(Enum):
    """The kinds of Norwegian person identifier (DOMAIN.md §1)."""

    FNR = "fnr"  # fødselsnummer (Skatteetaten / Folkeregisteret)
    DNR = "dnr"  # D-nummer: day + 40 (Folkeregisteret, persons without a fødselsnummer)
    HNR = "hnr"  # H-nummer form: month + 40 (local hjelpenummer, or NAV Dolly synthetic)
    FHN = "fhn"  # felles hjelpenummer (Norsk Helsenett): first digit 8 or 9
    DUF = "duf"  # DUF-nummer (UDI, 12 digits)


@dataclass(frozen=True, slots=True)
class PersonId:
    """What the digits of a valid person number say — and deliberately nothing more.

    - `kind`: the form of the number. Following NAV's fnrvalidator, day + 40 is a D-nummer (also
      when the month is shifted: NAV's `dnr-and-hnr` / `dnr-and-tnr`), otherwise month + 40 is
      an H-nummer; month + 80 keeps the FNR/DNR kind and is flagged `synthetic`.
    - `synthetic`: "tenor" for month + 80 (Skatteetaten's Tenor and NAV's Test-Norge); "nav" for
      month + 40 (NAV Dolly — the same form as a local H-nummer, which is not a national id
      either, so both are treated as "not a real national id"); None otherwise.
    - `issued_2032_rule`: K1 is valid only under the 2032 rule (remainder 1, 2 or 3); such a
      number says nothing about century or gender. (A number *issued* after 2032 may still have
      a classic K1; nothing in the digits tells — FREG is the authority.)
    - `birth_date`: read under the old rules (DDMMYY with the offsets removed, century from the
      individnummer table) and only when those rules give one: None for 2032-rule numbers, FHN
      and DUF, individnummer/year pairs outside the table, and dates that do not exist in the
      century the table gives (e.g. 29.02.1900). A hint only: FREG holds the real birth date.
      Left out of repr so a logged PersonId does not leak it.
    """

    kind: PersonIdKind
    synthetic: Synthetic | None = None
    issued_2032_rule: bool = False
    birth_date: date | None = field(default=None, repr=False)


# ------------------------------------------------------------------------------ check digits


def _weighted_rest(weights: tuple[int, ...], digits: list[int]) -> int:
    return sum(w * x for w, x in zip(weights, digits, strict=False)) % 11


def _k2_ok(d: list[int]) -> bool:
    # K2 = 11 − r2 with 11 → 0 and 10 invalid  ⇔  (K2 + r2) mod 11 == 0 for a digit K2.
    return (d[10] + _weighted_rest(_K2_WEIGHTS, d)) % 11 == 0


def _k1_rest(d: list[int]) -> int:
    """Which c − 11 (0 = classic, 1..3 = 2032 rule) gives the K1 in `d`; > 3 means none does."""
    # K1 ≡ c − r1 (mod 11) for c in 11..14  ⇔  (K1 + r1) mod 11 ∈ {0, 1, 2, 3}; a K1 of 10 is
    # impossible because K1 is a single digit.
    return (d[9] + _weighted_rest(_K1_WEIGHTS, d)) % 11


def _check_digit(rest_target: int, weights: tuple[int, ...], digits: list[int]) -> int | None:
    """The check digit k with (k + weighted sum) ≡ rest_target (mod 11), None when it is 10."""
    k = (rest_target - _weighted_rest(weights, digits)) % 11
    return None if k == 10 else k


def _with_check_digits(first9: list[int], k1_rest: int = 0) -> str | None:
    k1 = _check_digit(k1_rest, _K1_WEIGHTS, first9)
    if k1 is None:
        return None
    k2 = _check_digit(0, _K2_WEIGHTS, [*first9, k1])
    if k2 is None:
        return None
    return "".join(map(str, first9)) + f"{k1}{k2}"


def _digits(value: str) -> list[int]:
    return [ord(ch) - 48 for ch in value]


# ------------------------------------------------------------------------ fødselsnummer forms


def _birth_date_form_is_valid(digits: str) -> bool:
    """DDMMYY with the accepted offsets: D-nummer day+40, synthetic/H-nummer month+40 or +80."""
    day, month, year = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    if day > 40:
        day -= 40  # D-nummer
    if month > 80:
        month -= 80  # Skatteetaten/Tenor synthetic numbers
    elif month > 40:
        month -= 40  # NAV Dolly synthetic numbers (same form as local H-nummer)
    if not 1 <= month <= 12:
        return False
    if month == 2 and day == 29:
        return year % 4 == 0
    return 1 <= day <= _DAYS_IN_MONTH[month - 1]


def fnr_is_valid(value: str) -> bool:
    """True if `value` is a well-formed fødselsnummer or D-nummer (11 ASCII digits).

    Accepts real, D-nummer (day+40) and synthetic (month+40, month+80) birth-date forms, and
    both K1 rules in parallel as Skatteetaten requires from 2032: K1 must equal
    c − (sum mod 11) for some c in {11, 12, 13, 14}, where results above 10 wrap by −11 and 10 is
    discarded (c = 11 is the classic rule). K2 is the classic mod-11 digit over d1..i3 and K1.
    Does not check that the individnummer fits the century: 2032 numbers carry no century.
    """
    if not isinstance(value, str) or not _ELEVEN_DIGITS.fullmatch(value):
        return False
    if not _birth_date_form_is_valid(value):
        return False
    d = _digits(value)
    return _k1_rest(d) <= 3 and _k2_ok(d)


def fhn_is_valid(value: str) -> bool:
    """True if `value` is a felles hjelpenummer: 11 ASCII digits, first digit 8 or 9, classic K1/K2.

    NHN: "ellevesifret med to kontrollsiffer, som i ordinære fødselsnummer, men med første siffer
    8 eller 9"; the other digits are random and carry no meaning. The 2032 K1 rule is
    Skatteetaten's and is not applied to NHN's numbers. First digit 8/9 means day ≥ 80, so an FHN
    is never a valid FNR/D-nummer and vice versa.
    """
    if not isinstance(value, str) or not _ELEVEN_DIGITS.fullmatch(value) or value[0] not in "89":
        return False
    d = _digits(value)
    return _k1_rest(d) == 0 and _k2_ok(d)


def duf_is_valid(value: str) -> bool:
    """True if `value` is 12 ASCII digits — the only DUF-nummer rule DOMAIN.md §1 gives.

    UDI's DUF-nummer may carry check digits, but no verified rule is available, so none is
    checked (a wrong DUF-nummer is caught by the lookup against the register, not here).
    """
    return isinstance(value, str) and _TWELVE_DIGITS.fullmatch(value) is not None


# Individnummer → century (DOMAIN.md §1, [S20]): 1854–99: 749–500, 1900–99: 499–000,
# 1940–99: 999–900, 2000–39: 999–500. The ranges do not overlap once yy is known.
def _century(individ: int, yy: int) -> int | None:
    if individ <= 499:
        return 1900
    if individ >= 900 and yy >= 40:
        return 1900
    if yy <= 39:
        return 2000  # 500–999
    if individ <= 749 and yy >= 54:
        return 1800
    return None  # 500–749 with yy 40–53, 750–899 with yy ≥ 40: not assigned under the old rules


def _old_rule_birth_date(d: list[int]) -> date | None:
    day = (d[0] * 10 + d[1]) % 40  # day + 40 (D-nummer) → day; days are 1..31
    month = (d[2] * 10 + d[3]) % 40  # month + 40 / + 80 → month; months are 1..12
    yy = d[4] * 10 + d[5]
    century = _century(d[6] * 100 + d[7] * 10 + d[8], yy)
    if century is None:
        return None
    try:
        return date(century + yy, month, day)
    except ValueError:  # e.g. 29 February 1900: only a 2032-rule issue could carry that
        return None


def classify_person_id(value: str) -> PersonId | None:
    """What kind of valid person number `value` is, or None if it is none of them.

    11 digits starting with 8 or 9 → FHN (classic check digits); other 11 digits → FNR / DNR /
    HNR by `fnr_is_valid` and the offsets (see `PersonId`); 12 digits → DUF. Local H-numbers in
    the old "first digit 8/9" form are indistinguishable from FHN and are classified FHN.
    """
    if not isinstance(value, str):
        return None
    if _TWELVE_DIGITS.fullmatch(value):
        return PersonId(PersonIdKind.DUF)
    if not _ELEVEN_DIGITS.fullmatch(value):
        return None
    if value[0] in "89":
        return PersonId(PersonIdKind.FHN) if fhn_is_valid(value) else None
    if not fnr_is_valid(value):
        return None
    d = _digits(value)
    month_form = d[2] * 10 + d[3]
    synthetic: Synthetic | None = "tenor" if month_form > 80 else "nav" if month_form > 40 else None
    if d[0] >= 4:
        kind = PersonIdKind.DNR
    elif synthetic == "nav":
        kind = PersonIdKind.HNR
    else:
        kind = PersonIdKind.FNR
    rule_2032 = _k1_rest(d) != 0
    return PersonId(
        kind=kind,
        synthetic=synthetic,
        issued_2032_rule=rule_2032,
        birth_date=None if rule_2032 else _old_rule_birth_date(d),
    )


def validate_person_id(value: str, *, allow_synthetic: bool) -> list[str]:
    """Why `value` is not acceptable as a person number here; [] when it is.

    Accepts fødselsnummer, D-nummer, felles hjelpenummer and DUF-nummer. Synthetic numbers —
    month + 80 (Tenor / Test-Norge) and month + 40 (NAV Dolly, the same form as a local
    H-nummer, which is not a national id) — are refused unless `allow_synthetic`. Production
    callers pass `allow_synthetic=settings.allow_synthetic_ids` (AKSON_ALLOW_SYNTHETIC_IDS,
    off in production). Reasons are fixed English sentences that never contain the value.
    """
    if not isinstance(value, str):
        return ["A person number must be a string"]
    if not (value.isascii() and value.isdigit()) or len(value) not in (11, 12):
        return [
            "A person number is 11 digits (fødselsnummer, D-nummer, felles hjelpenummer) "
            "or 12 digits (DUF-nummer)"
        ]
    person = classify_person_id(value)
    if person is None:
        if value[0] in "89":
            return ["Invalid check digits for a felles hjelpenummer"]
        if not _birth_date_form_is_valid(value):
            return ["The first six digits are not a valid birth date (DDMMYY, with offsets)"]
        return ["Invalid check digits for a fødselsnummer or D-nummer"]
    if person.synthetic and not allow_synthetic:
        if person.synthetic == "tenor":
            return ["A synthetic test number (birth month + 80) is not accepted here"]
        return [
            "A number with birth month + 40 (NAV synthetic test number or local H-nummer) "
            "is not a national id and is not accepted here"
        ]
    return []


# ----------------------------------------------------------------------------- other numbers


def orgnr_is_valid(value: str) -> bool:
    """True if `value` is a 9-digit organisasjonsnummer with a valid mod-11 check digit.

    Weights 3,2,7,6,5,4,3,2 over the first eight digits; check = 11 − (sum mod 11), 11 → 0,
    10 → invalid (https://www.brreg.no/om-oss/registrene-vare/om-enhetsregisteret/organisasjonsnummeret/).
    """
    if not isinstance(value, str) or not _NINE_DIGITS.fullmatch(value):
        return False
    d = _digits(value)
    return (d[8] + _weighted_rest(_ORGNR_WEIGHTS, d)) % 11 == 0


def hpr_is_valid(value: str) -> bool:
    """True if `value` looks like an HPR-nummer: a positive number of 1–9 ASCII digits.

    No checksum: DOMAIN.md §1 leaves HPR's checksum unverified, so validity is decided by a
    lookup in Helsepersonellregisteret. Leading zeros are refused so one person cannot be stored
    under two spellings ("09144900" and "9144900" are different FHIR identifier values).
    """
    return isinstance(value, str) and _POSITIVE_NUMBER.fullmatch(value) is not None


def her_id_is_valid(value: str) -> bool:
    """True if `value` looks like a HER-id: a positive number of 1–9 ASCII digits, no leading zero.

    A HER-id is Adresseregisteret's id of a communication party (organisation, person in role or
    service) — an address, never a person id. Existence is decided by Adresseregisteret.
    """
    return isinstance(value, str) and _POSITIVE_NUMBER.fullmatch(value) is not None


# ------------------------------------------------------------------------------- generators


def make_fnr(
    born: date,
    individ: int,
    *,
    synthetic: Synthetic | None = None,
    d_number: bool = False,
    k1_rest: int = 0,
) -> str | None:
    """A number for `born` and `individ` with valid check digits; None when a check digit is 10.

    For tests and the demo generator. `synthetic` shifts the month (+80 "tenor", +40 "nav"),
    `d_number` the day (+40). `k1_rest` 0 gives the classic K1; 1–3 give a K1 valid only under
    the 2032 rule (c = 12..14). With the classic K1 the individnummer must encode `born`'s
    century (1854–99: 500–749, 1900–99: 000–499, 1940–99: 900–999, 2000–39: 500–999), so the
    number reads back as `born`; 2032-rule numbers carry no century and any individnummer goes.
    """
    if synthetic not in _MONTH_OFFSETS:
        raise ValueError("synthetic must be None, 'tenor' or 'nav'")
    if not 0 <= individ <= 999:
        raise ValueError("individnummer must be 0..999")
    if not 0 <= k1_rest <= 3:
        raise ValueError("k1_rest must be 0 (classic) or 1..3 (2032 rule)")
    yy = born.year % 100
    if k1_rest == 0 and _century(individ, yy) != born.year - yy:
        raise ValueError("the individnummer does not encode the birth year's century")
    day = born.day + (40 if d_number else 0)
    month = born.month + _MONTH_OFFSETS[synthetic]
    return _with_check_digits(_digits(f"{day:02d}{month:02d}{yy:02d}{individ:03d}"), k1_rest)


def make_fhn(rng: random.Random) -> str:
    """A random felles hjelpenummer (first digit 8 or 9, random digits, classic check digits)."""
    while True:
        first9 = [rng.choice((8, 9)), *(rng.randrange(10) for _ in range(8))]
        number = _with_check_digits(first9)
        if number is not None:
            return number


def make_orgnr(rng: random.Random) -> str:
    """A random 9-digit organisasjonsnummer with a valid check digit, first digit 8 or 9 like the
    numbers in use. For test and demo data only: it may belong to a real organisation."""
    while True:
        first8 = [rng.choice((8, 9)), *(rng.randrange(10) for _ in range(7))]
        check = _check_digit(0, _ORGNR_WEIGHTS, first8)
        if check is not None:
            return "".join(map(str, first8)) + str(check)
