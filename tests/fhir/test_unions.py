"""akson.fhir.unions: an Observation's `combo-*` rows are copied from the rows of the two
parameters R4 unites in them — the same rows their own expressions give — and a server that
redefines one of them gets them extracted again."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from akson.fhir import unions
from akson.fhir.search import index_rows
from akson.fhir.searchparams import SearchParamRegistry

EXAMPLES = Path(__file__).parents[1] / "data" / "r4-examples"

#: Shapes the official examples have few of: components with quantities, concepts and absent
#: values side by side, a code repeated in a component, SampledData.
_MADE = [
    {"resourceType": "Observation", "status": "final",
     "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BT"},
     "component": [
         {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
          "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                            "code": "mm[Hg]"}},
         {"code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BT"},
          "dataAbsentReason": {"coding": [{"code": "unknown"}]}},
         {"code": {"text": "farge"}, "valueCodeableConcept": {"text": "gul"}}]},
    {"resourceType": "Observation", "status": "final", "code": {"text": "vekt"},
     "valueQuantity": {"value": 72.50, "unit": "kg", "system": "http://unitsofmeasure.org",
                       "code": "kg"}},
    {"resourceType": "Observation", "status": "final", "code": {"text": "ekg"},
     "valueSampledData": {"origin": {"value": 0}, "period": 10, "dimensions": 1, "data": "1 2"}},
]


def _observations() -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("Observation-*.json"))]
    assert len(found) > 40
    return found + _MADE


def _redefined() -> SearchParamRegistry:
    """R4's registry with `combo-code` stored again as a server-side SearchParameter (the
    same definition, a new object): copying is off."""
    bundle = json.loads((resources.files("akson.fhir.data") / "search-parameters.json")
                        .read_bytes())
    combo = next(e["resource"] for e in bundle["entry"] if e["resource"].get("url")
                 == "http://hl7.org/fhir/SearchParameter/Observation-combo-code")
    registry = SearchParamRegistry.default().copy()
    registry.add(combo)
    return registry


def _rows(resource: dict[str, Any], registry: SearchParamRegistry) -> dict[str, set[Any]]:
    found, extra = index_rows(resource, registry)
    out = {name: set(getattr(found, name)) for name in (
        "tokens", "identifier_types", "strings", "dates", "references", "quantities",
        "numbers", "uris")}
    out.update(texts=set(extra.texts), composites=set(extra.composites))
    return out


def test_copied_rows_are_the_rows_the_expressions_give() -> None:
    default, extracting = SearchParamRegistry.default(), _redefined()
    assert unions.copied_from(default, "Observation") and not unions.copied_from(
        extracting, "Observation")
    combos = 0
    for resource in _observations():
        copied = _rows(resource, default)
        assert copied == _rows(resource, extracting), resource.get("id")
        combos += sum(1 for rows in copied.values() for row in rows
                      if str(row[0]).startswith("combo-"))
    assert combos > 100  # the comparison saw union rows of every kind below
    made = _rows(_MADE[0], default)
    assert any(r[:3] == ("combo-code-value-quantity", "http://loinc.org", "8480-6")
               for r in made["composites"])
    assert ("combo-data-absent-reason", None, "unknown") in made["tokens"]
    assert ("combo-value-concept", "gul") in made["texts"]


@pytest.mark.parametrize("res_type", ["Patient", "Condition"])
def test_types_without_unions_copy_nothing(res_type: str) -> None:
    assert unions.copied_from(SearchParamRegistry.default(), res_type) == {}
