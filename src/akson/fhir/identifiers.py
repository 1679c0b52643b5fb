"""Check-digit validation of Norwegian person numbers (fødselsnummer, D-nummer) and orgnr.

Rules are those of DOMAIN.md §1: Skatteetaten's fødselsnummer rules including the 2032 change
(https://skatteetaten.github.io/folkeregisteret-api-dokumentasjon/nytt-fodselsnummer-fra-2032/)
and Brønnøysundregistrene's organisasjonsnummer rule. Pure functions, no I/O. The values these
functions see are personal data: never log or echo them.
"""

from __future__ import annotations

import re

__all__ = ["fnr_is_valid", "orgnr_is_valid"]

_ELEVEN_DIGITS = re.compile(r"[0-9]{11}")
_NINE_DIGITS = re.compile(r"[0-9]{9}")

_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)

# Days per month; February allows 29 because a number carries no reliable century (yy=00 may be
# 1900 or 2000) and the 2032 numbers carry none at all, so leap years are judged by yy alone.
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


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
    d = [ord(ch) - 48 for ch in value]
    if not _birth_date_form_is_valid(value):
        return False
    r1 = sum(w * x for w, x in zip(_K1_WEIGHTS, d, strict=False)) % 11
    # K1 ≡ c − r1 (mod 11) for c in 11..14  ⇔  (K1 + r1) mod 11 ∈ {0, 1, 2, 3}; a K1 of 10 is
    # impossible because K1 is a single digit.
    if (d[9] + r1) % 11 > 3:
        return False
    r2 = sum(w * x for w, x in zip(_K2_WEIGHTS, d, strict=False)) % 11
    # K2 = 11 − r2 with 11 → 0 and 10 invalid  ⇔  (K2 + r2) mod 11 == 0 for a digit K2.
    return (d[10] + r2) % 11 == 0


def orgnr_is_valid(value: str) -> bool:
    """True if `value` is a 9-digit organisasjonsnummer with a valid mod-11 check digit.

    Weights 3,2,7,6,5,4,3,2 over the first eight digits; check = 11 − (sum mod 11), 11 → 0,
    10 → invalid (https://www.brreg.no/om-oss/registrene-vare/om-enhetsregisteret/organisasjonsnummeret/).
    """
    if not isinstance(value, str) or not _NINE_DIGITS.fullmatch(value):
        return False
    d = [ord(ch) - 48 for ch in value]
    r = sum(w * x for w, x in zip(_ORGNR_WEIGHTS, d, strict=False)) % 11
    return (d[8] + r) % 11 == 0
