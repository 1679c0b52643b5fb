"""Which date parameters give a resource at most one index row (akson.fhir.cardinality)."""

from __future__ import annotations

import pytest

from akson.fhir.cardinality import single_date
from akson.fhir.searchparams import SearchParamRegistry

REGISTRY = SearchParamRegistry.default()


@pytest.mark.parametrize(("res_type", "code", "single"), [
    ("Encounter", "date", True),              # Encounter.period: one Period
    ("Patient", "birthdate", True),           # a date
    ("Patient", "death-date", True),          # (Patient.deceased as dateTime)
    ("Procedure", "date", True),              # performed[x]: one of dateTime, Period, string …
    ("DiagnosticReport", "date", True),       # effective[x]: dateTime or Period
    ("Observation", "date", False),           # effective[x] may be a Timing: a row per event
    ("MedicationRequest", "date", False),     # dosageInstruction is a list
    ("Condition", "onset-date", False),       # two paths of the type
])
def test_single_date_follows_the_schema(res_type: str, code: str, single: bool) -> None:
    param = REGISTRY.get(res_type, code)
    assert param is not None
    assert single_date(param.expression, res_type) is single


def test_what_is_not_understood_counts_as_several() -> None:
    assert not single_date("Patient.extension.where(url = 'x').value", "Patient")
    assert not single_date("Patient.nosuchelement", "Patient")
    assert not single_date("(((", "Patient")
