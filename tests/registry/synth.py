"""Synthetic test identities for the register tests (Tenor month + 80 only, DOMAIN.md §1)."""

from __future__ import annotations

from datetime import date

from akson.fhir.identifiers import make_fnr


def tenor(born: date, individ: int) -> str:
    """A synthetic (Tenor, month + 80) fødselsnummer; the next individnummer if one has no
    valid check digit."""
    for i in range(individ, individ + 20):
        nin = make_fnr(born, i, synthetic="tenor")
        if nin:
            return nin
    raise AssertionError("no valid number found")


def tenor_d(born: date, individ: int) -> str:
    """A synthetic (Tenor) D-nummer."""
    for i in range(individ, individ + 20):
        nin = make_fnr(born, i, synthetic="tenor", d_number=True)
        if nin:
            return nin
    raise AssertionError("no valid number found")

#: Valid organisation numbers (check digit right) made by make_orgnr(Random(7)); test use only.
ORGNR = ["926018159", "883016610", "818609132", "899603087", "846281940", "819935181"]
