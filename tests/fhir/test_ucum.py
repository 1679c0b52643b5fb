"""akson.fhir.ucum: the UCUM parser and canonical conversion, table-driven (https://ucum.org/ucum),
and the canonical index rows akson.fhir.indexing adds for UCUM quantities."""

from __future__ import annotations

from decimal import Decimal

import pytest

from akson.fhir import ucum
from akson.fhir.indexing import CANONICAL_SYSTEM, canonical_quantity, extract
from akson.fhir.jsonio import loads

UCUM = ucum.SYSTEM

# (value, unit, canonical value, canonical unit): the value is given as text, so the expected
# result is exact (Decimal), not a float approximation.
CONVERSIONS: list[tuple[str, str, str, str]] = [
    # mass
    ("1000", "mg", "1", "g"),
    ("1", "g", "1", "g"),
    ("95", "kg", "95000", "g"),
    ("250", "ug", "0.00025", "g"),
    ("12", "ng", "0.000000012", "g"),
    ("1.5", "t", "1500000", "g"),
    ("185", "[lb_av]", "83914.58845", "g"),
    ("16", "[oz_av]", "453.59237", "g"),
    # length
    ("180", "cm", "1.8", "m"),
    ("12", "mm", "0.012", "m"),
    ("70", "[in_i]", "1.778", "m"),
    ("1", "[ft_i]", "0.3048", "m"),
    ("3", "dam", "30", "m"),
    # volume
    ("1", "L", "0.001", "m3"),
    ("1", "l", "0.001", "m3"),
    ("250", "mL", "0.00025", "m3"),
    ("3", "dL", "0.0003", "m3"),
    ("90", "fL", "9E-17", "m3"),
    ("1", "cm3", "0.000001", "m3"),
    # time
    ("90", "s", "90", "s"),
    ("2", "min", "120", "s"),
    ("1.5", "h", "5400", "s"),
    ("1", "d", "86400", "s"),
    ("2", "wk", "1209600", "s"),
    ("1", "mo", "2629800", "s"),
    ("1", "a", "31557600", "s"),
    ("250", "ms", "0.25", "s"),
    # amount and concentration
    ("5", "mol", "5", "mol"),
    ("5.4", "mmol", "0.0054", "mol"),
    ("5.4", "mmol/L", "5.4", "m-3.mol"),
    ("5400", "umol/L", "5.4", "m-3.mol"),
    ("140", "meq/L", "140", "m-3.mol"),
    ("90", "mg/dL", "900", "g.m-3"),
    ("9", "g/L", "9000", "g.m-3"),
    ("7.5", "10*9/L", "7.5E+12", "m-3"),
    ("7500", "10*6/L", "7.5E+12", "m-3"),
    ("250", "10*9/L", "2.5E+14", "m-3"),
    ("4.5", "10*12/L", "4.5E+15", "m-3"),
    ("7.5", "10^9/L", "7.5E+12", "m-3"),
    ("12", "/L", "12000", "m-3"),
    ("3", "/uL", "3E+9", "m-3"),
    ("60", "U/L", "0.001", "m-3.mol.s-1"),
    ("40", "[IU]/L", "40000", "[IU].m-3"),
    ("40", "m[IU]/mL", "40000", "[IU].m-3"),
    ("40", "[iU]/L", "40000", "[IU].m-3"),
    ("1", "ukat/L", "0.001", "m-3.mol.s-1"),
    # dimensionless: per cent and friends, annotations mean nothing
    ("45", "%", "0.45", "1"),
    ("3", "[ppth]", "0.003", "1"),
    ("8", "{score}", "8", "1"),
    ("1", "10*3", "1000", "1"),
    # pressure
    ("120", "mm[Hg]", "15998640", "g.m-1.s-2"),
    ("16", "kPa", "16000000", "g.m-1.s-2"),
    ("1", "Pa", "1000", "g.m-1.s-2"),
    ("10", "cm[H2O]", "980665", "g.m-1.s-2"),
    ("1", "bar", "100000000", "g.m-1.s-2"),
    ("1", "atm", "101325000", "g.m-1.s-2"),
    # rates, body measures
    ("72", "/min", "1.2", "s-1"),
    ("72", "{beats}/min", "1.2", "s-1"),
    ("1.2", "Hz", "1.2", "s-1"),
    ("16", "{breaths}/min", "0.2666666666666666666666666666666667", "s-1"),
    ("24.5", "kg/m2", "24500", "g.m-2"),
    ("1.9", "m2", "1.9", "m2"),
    ("100", "mL/min", "0.000001666666666666666666666666666666667", "m3.s-1"),
    ("2", "kcal", "8368000", "g.m2.s-2"),
    # grammar: parentheses, quotients are left-associative, annotations after an atom
    ("1", "kg.m/s2", "1000", "g.m.s-2"),
    ("1", "(kg.m)/s2", "1000", "g.m.s-2"),
    ("1", "kg/(m.s2)", "1000", "g.m-1.s-2"),
    ("1", "mg/kg/d", "0.00000000001157407407407407407407407407", "s-1"),
    ("5", "mL{total}", "0.000005", "m3"),
    ("2", "g.m-3", "2", "g.m-3"),
    ("2", "m-3.mol", "2", "m-3.mol"),
    # temperature: affine, whole expression only
    ("37", "Cel", "310.15", "K"),
    ("98.6", "[degF]", "310.15", "K"),
    ("-40", "[degF]", "233.15", "K"),
    ("300", "K", "300", "K"),
]


@pytest.mark.parametrize(("value", "unit", "expected", "code"), CONVERSIONS,
                         ids=[f"{v} {u}" for v, u, _, _ in CONVERSIONS])
def test_converts_to_canonical_form(value: str, unit: str, expected: str, code: str) -> None:
    result = ucum.canonical(value, unit)
    assert result is not None
    number, canonical_code = result
    assert canonical_code == code
    # Exact, but for the divisions by 60 or 9 (min, [degF]), correct to 25 significant digits.
    assert abs(number - Decimal(expected)) <= abs(Decimal(expected)).scaleb(-25)


# Not UCUM, outside the supported set, or an affine unit inside a product: unknown (None), so
# only the literal unit matches in search.
UNKNOWN = [
    "", "mmHg", "mcg", "cc", "µg", "mEq/L", "xyz", "mg / dL", "mg/", "/", "m..g", "(m)2",
    "(mg", "mg)", "{beats", "g{", "[in_i", "mCel", "Cel/h", "[degF]2", "2m", "m2222",
    "10*9999", "da", "ka", "kmin", "[pH]", "g" * 200, "m{b}{c}", "-1", "+2",
]


@pytest.mark.parametrize("unit", UNKNOWN)
def test_unknown_units_are_none(unit: str) -> None:
    assert ucum.parse(unit) is None
    assert ucum.canonical("1", unit) is None


def test_canonical_code_parses_back_to_itself() -> None:
    """The canonical code is a UCUM expression with factor 1: a row stored in it is a canonical
    row already, and needs no extra one."""
    for *_, code in CONVERSIONS:
        again = ucum.parse(code)
        assert again is not None and again.code == code and again.factor == 1, code


def test_values_in_json_shapes() -> None:
    doc = loads(b'{"a": 0.1, "b": 3, "c": 1.10}')
    assert ucum.canonical(doc["a"], "L") == (Decimal("0.0001"), "m3")
    assert ucum.canonical(doc["b"], "dL") == (Decimal("0.0003"), "m3")
    assert ucum.canonical(doc["c"], "kg")[0] == Decimal("1100")  # keeps its digits
    assert ucum.canonical(0.1, "L") == (Decimal("0.0001"), "m3")  # a float by its shortest text
    for bad in (True, None, float("nan"), float("inf"), "1_000", "abc", [1]):
        assert ucum.canonical(bad, "g") is None


def test_decimal_arithmetic_avoids_float_error() -> None:
    # 3 × 0.1 is 0.30000000000000004 in floats; the canonical rows are compared by `=`/`<`.
    assert float(ucum.canonical(3, "dL")[0]) == float(ucum.canonical("0.3", "L")[0])
    assert float(ucum.canonical(5400, "umol/L")[0]) == 5.4


# --- the canonical index rows -------------------------------------------------------------


def _rows(quantity: dict) -> list[tuple]:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "valueQuantity": quantity}
    return [r[1:] for r in extract(obs).quantities if r[0] == "value-quantity"]


def test_index_adds_a_canonical_row_for_ucum_quantities() -> None:
    assert _rows({"value": 1000, "system": UCUM, "code": "mg"}) == [
        (1000.0, UCUM, "mg"), (1.0, CANONICAL_SYSTEM, "g")]
    # Already canonical: the literal row is the canonical row.
    assert _rows({"value": 95000, "system": UCUM, "code": "g"}) == [(95000.0, UCUM, "g")]
    # No system, but a UCUM code: a canonical row too, so a UCUM search finds it.
    assert _rows({"value": 1, "code": "g"}) == [(1.0, None, "g"), (1.0, CANONICAL_SYSTEM, "g")]
    assert _rows({"value": 37, "system": UCUM, "code": "Cel"}) == [
        (37.0, UCUM, "Cel"), (310.15, CANONICAL_SYSTEM, "K")]


def test_index_keeps_other_quantities_literal() -> None:
    assert _rows({"value": 5.4, "system": UCUM, "code": "mmHg"}) == [(5.4, UCUM, "mmHg")]
    assert _rows({"value": 5, "system": "http://snomed.info/sct", "code": "258684004"}) == [
        (5.0, "http://snomed.info/sct", "258684004")]
    assert _rows({"value": 5, "unit": "mg"}) == [(5.0, None, "mg")]  # `unit` is display text
    assert _rows({"value": 5}) == [(5.0, None, None)]
    assert canonical_quantity(1, UCUM, None) is None
    assert canonical_quantity(1, UCUM, "10*999") is None  # beyond a float: no row


def test_canonical_quantity_of_composite_components() -> None:
    assert canonical_quantity(120, UCUM, "mm[Hg]") == (15998640.0, CANONICAL_SYSTEM,
                                                       "g.m-1.s-2")
    assert canonical_quantity(16, None, "kPa") == (16000000.0, CANONICAL_SYSTEM, "g.m-1.s-2")
    assert canonical_quantity(16, "http://example.org/units", "kPa") is None
